"""Every config field, with its default and what it means: the base every recipe in configs/ edits.

Not a recipe of its own: run one of the others (resnet18.py is these defaults with its model).
The optimiser and schedule defaults are kuangliu/pytorch-cifar's (200 epochs, batch 128, SGD lr 0.1
momentum 0.9, weight decay 5e-4, cosine). Durations may be given in steps or in epochs: for each
pair, 0 means unset, and setting both is an error.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  # resnet20/32/44/56/110 (the paper's CIFAR nets), plain20..110 (no shortcuts),
  # resnet18/34/50 (kuangliu's CIFAR versions), preact_resnet18/164/1001 (pre-activation),
  # wrn16_8, wrn28_10 (wide), resnet_test (tiny, for tests).
  config.model.name = 'resnet20'
  # Compute dtype, 'float32' or 'bfloat16'. Params and optimiser state stay float32.
  config.model.dtype = 'float32'
  # The paper's nets only: 'A' (parameter-free zero-padding) or 'B' (1x1 conv projection).
  # '': the model's published choice (A for the paper's nets; resnet18/34/50 always project).
  config.model.shortcut = ''
  # Start each residual block as the identity by zero-initialising its last BN scale (the nets
  # whose blocks end in a BN: not the pre-activation and wide nets).
  config.model.zero_init_residual = False
  # Wide nets only: dropout between each block's two convs in training (Zagoruyko: 0.3).
  config.model.dropout_rate = 0.0
  # Pre-activation and wide nets: each stage's blocks after its first run as one scanned stack,
  # compiled once instead of once per block (preact_resnet1001: 110 per stage). Same function,
  # checkpoints of another tree (params stacked on a leading axis).
  config.model.scan_blocks = False
  # Pre-activation and wide nets: recompute each block's activations in the backward pass
  # instead of keeping them (less memory, about one more forward pass of time).
  config.model.remat = False
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

  # Global batch of each replica, over its group's devices; must divide by their count.
  config.batch_size = 128
  config.num_epochs = 200
  # -1: num_epochs * steps_per_epoch. Otherwise the run length in steps (num_epochs is ignored).
  config.num_train_steps = -1
  config.seed = 0
  # Independent runs trained at once, in one program: replica k is the run of seed + k (its own
  # weights, data order, augmentation, BatchNorm statistics and optimiser state). batch_size is
  # each replica's. Results are means over the replicas, with their standard deviation.
  config.num_replicas = 1
  # How the devices are shared: r groups of (devices / r) devices, each group training
  # num_replicas / r replicas data-parallel across its devices. 0: gcd(num_replicas, devices),
  # which leaves no device idle and no traffic between groups. r must divide both.
  config.replica_groups = 0

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
  # The warm-up's length, in steps or in epochs (0: no warm-up).
  config.schedule.warmup_steps = 0
  config.schedule.warmup_epochs = 0.0
  # 'linear': learning_rate * (s + 1) / warmup at step s, up to learning_rate at the warm-up's
  # last step (earlier runs started at 0: docs/how-it-works.md). 'constant': learning_rate *
  # warmup_factor throughout the warm-up (the paper's ResNet-110 recipe).
  config.schedule.warmup_mode = 'linear'
  config.schedule.warmup_factor = 0.1
  # piecewise: when the rate is multiplied by decay_factor, in steps counted from step 0, or in
  # epochs; e.g. (32000, 48000) or boundary_epochs (100, 150).
  config.schedule.boundaries = ()
  config.schedule.boundary_epochs = ()
  config.schedule.decay_factor = 0.1

  config.label_smoothing = 0.0

  # Training augmentation beyond the crop and flip every run has.
  config.augment = ml_collections.ConfigDict()
  # Cutout (DeVries & Taylor 2017): the side of one square zeroed in each training image after
  # normalisation (so it takes the dataset's mean colour), centred on a uniform pixel and
  # clipped at the borders; 0: off. The paper uses 16 on CIFAR-10, 8 on CIFAR-100.
  config.augment.cutout_size = 0

  # An exponential moving average of the weights and BatchNorm statistics, updated after every
  # step, saved in the checkpoints and evaluated beside the raw weights (as the splits
  # test_ema, validation_ema: each evaluation takes twice as long). resnet_jax/ema.py has the
  # update; docs/how-it-works.md why the BatchNorm statistics are averaged too.
  config.ema = ml_collections.ConfigDict()
  # The average's decay per step, in [0, 1); 0: no average. E.g. 0.999 (about the last 1000
  # steps) or 0.9999.
  config.ema.decay = 0.0
  # Ramp the decay as min(decay, (1 + t) / (10 + t)) at step t, so the average forgets the
  # initialisation within a few steps (TensorFlow's num_updates); False: decay from step 0.
  config.ema.warmup = True

  # Train steps per jitted call (unrolled). Any value works with any cadence: a call ends early,
  # in power-of-two pieces, to land exactly on an epoch end, an eval or a checkpoint.
  # benchmarks/RESULTS.md measures the choice.
  config.steps_per_call = 4
  # Cadences, each in steps or in epochs (fractions allowed); any positive value.
  config.log_every_steps = 100
  config.log_every_epochs = 0.0
  config.eval_every_steps = 0
  config.eval_every_epochs = 1.0
  config.checkpoint_every_steps = 0
  config.checkpoint_every_epochs = 1.0
  config.keep_checkpoints = 3

  # Resume even though the saved config differs in a field that changes what the run computes
  # (model, dataset, batch size, optimiser, schedule, seed, steps_per_call, label smoothing,
  # augmentation, EMA, the length of a cosine run, or an eval or checkpoint cadence that moves
  # where the jitted calls end).
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
  # Batch for evaluation; must divide by the device count (512 does for 1 to 512 devices in
  # powers of two). The last batch is padded and masked.
  config.eval.batch_size = 512
  # --mode=eval restores this step; -1: the latest checkpoint.
  config.eval.step = -1
  # Also report loss, top-1 and top-5 of the logits averaged over each image and its horizontal
  # flip (*_flip_tta in metrics.jsonl and eval_<step>.json); costs a second forward pass.
  config.eval.flip_tta = False
  # Other test sets --mode=eval evaluates beside the test split, by tfds name, e.g.
  # "('cifar10_1', 'cifar10_corrupted/gaussian_noise_5')" (a single name needs no brackets).
  # 'cifar10_corrupted': all of CIFAR-10-C, with the benchmark's mean over its 15 corruptions x 5
  # severities (the 4 held-out corruptions apart). CIFAR-10 models only; docs/data.md.
  config.eval.extra_datasets = ()
  # Where tfds prepares them (on first use, needing the network once); '': dataset.data_dir.
  # Set it when dataset.source='archive', to keep tfds's folders out of the archive's.
  config.eval.extra_data_dir = ''

  # --mode=export writes checkpoint eval.step (-1: the latest) to workdir/export/<step>/.
  config.export = ml_collections.ConfigDict()
  # Which replica to export (the run of seed + replica).
  config.export.replica = 0
  # Replace an export of the same step; without it, one that exists is refused.
  config.export.overwrite = False
  # Export the EMA of the weights (a run with ema.decay > 0) to export/<step>_ema/ instead.
  config.export.ema = False

  return config
