"""Every config field with its default. Each recipe in configs/ starts from this.

Run: python launch.py --config=configs/default.py --workdir=runs/default
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  # resnet20/32/44/56/110 (the paper's CIFAR nets), plain20..110 (no shortcuts),
  # resnet18/34/50 (kuangliu's CIFAR versions), resnet_test (tiny, for tests).
  config.model.name = 'resnet20'
  # Compute dtype, 'float32' or 'bfloat16'. Params and optimiser state stay float32.
  config.model.dtype = 'float32'
  # The paper's nets only: 'A' (parameter-free zero-padding) or 'B' (1x1 conv projection).
  # '': the model's published choice (A for the paper's nets; resnet18/34/50 always project).
  config.model.shortcut = ''
  # Start each residual block as the identity by zero-initialising its last BN scale.
  config.model.zero_init_residual = False
  # BatchNorm statistics in training: 0 over the whole global batch, across all devices and
  # hosts (what jit over a Mesh computes); n > 0 over groups of n examples ("ghost" BN). Set n
  # to the per-device batch for PyTorch DistributedDataParallel's per-GPU statistics.
  config.model.bn_group_size = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'cifar10'  # 'cifar10' or 'cifar100'
  # 'tfds': tensorflow-datasets, downloaded and prepared (as ArrayRecord) under data_dir on
  # first use. 'archive': the official binary-version files under data_dir, for offline machines.
  config.dataset.source = 'tfds'
  # tfds: where the prepared dataset lives (not ~/tensorflow_datasets, which may hold TFRecord
  # copies tfds.data_source cannot read). archive: the folder of the .bin files, its parent,
  # or a folder holding the .tar.gz.
  config.dataset.data_dir = 'data'
  # Train examples held out as a validation split (a fixed choice, the same for every seed).
  config.dataset.validation_size = 0

  config.batch_size = 128  # Global batch, over all devices; must divide by the device count.
  config.num_epochs = 200
  # -1: num_epochs * steps_per_epoch. Otherwise the run length in steps (num_epochs is ignored).
  config.num_train_steps = -1
  config.seed = 0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  # Coupled L2, as PyTorch's SGD: wd * param is added to the gradient before momentum.
  config.optimizer.weight_decay = 5e-4
  # Whether BatchNorm scales/biases and dense biases are decayed too (PyTorch's default: yes).
  config.optimizer.decay_bn_and_bias = True

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'cosine'  # 'cosine' (to 0 at the last step) or 'piecewise'
  config.schedule.warmup_steps = 0
  # 'linear': from 0 up to learning_rate. 'constant': learning_rate * warmup_factor
  # throughout the warm-up (the paper's ResNet-110 recipe).
  config.schedule.warmup_mode = 'linear'
  config.schedule.warmup_factor = 0.1
  # piecewise: the steps (counted from step 0) at which the rate is multiplied by decay_factor.
  config.schedule.boundaries = ()
  config.schedule.decay_factor = 0.1

  config.label_smoothing = 0.0

  # Train steps per jitted call (unrolled); every *_every_steps must be a multiple of it.
  # 4: ResNet-20 on 2 CPU cores trained 10% faster than with 1; 16 gained little more and took
  # 48 s to compile (benchmarks/RESULTS.md).
  config.steps_per_call = 4
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3

  # Resume even though the saved config differs in a field that changes what the run computes
  # (model, dataset, batch size, optimiser, schedule, seed, steps_per_call, label smoothing).
  config.allow_config_change = False

  # Several processes: how long each waits to see the probe file process 0 writes in the
  # workdir before refusing a workdir that is not shared (NFS can show new files late).
  config.shared_workdir_timeout_s = 60.0

  # JAX's persistent compilation cache, so a resumed or repeated run skips compiling ('': off).
  config.compilation_cache_dir = '~/.cache/resnet_jax/jax_compilation_cache'
  # Steps to trace with jax.profiler into workdir/profile, e.g. (100, 110): from the first chunk
  # boundary at or after 100 to the first at or after 110. Empty: no trace.
  config.profile_steps = ()

  config.eval = ml_collections.ConfigDict()
  # Batch for evaluation; must divide by the device count. The last batch is padded and masked.
  config.eval.batch_size = 500
  # --mode=eval restores this step; -1: the latest checkpoint.
  config.eval.step = -1
  # Also report loss, top-1 and top-5 of the logits averaged over each image and its horizontal
  # flip (*_flip_tta in metrics.jsonl and eval_<step>.json); costs a second forward pass.
  config.eval.flip_tta = False

  return config
