"""Reward-model training: the ML core, framework-free (no Django here).

Modules, lightest first: ``errors`` and ``config`` (no torch: the web process may import them to validate a
run's hyperparameters), ``evaluate``, ``calibration`` and ``selection`` (numpy and scipy only), then ``loss``,
``data``, ``model``, ``optim``, ``checkpoints``, ``trainer``, ``artifacts`` and ``ensemble``, which import
torch and transformers and belong in worker code paths only; ``launch`` trains in several data-parallel
processes (torchrun, DistributedDataParallel). This package's ``__init__`` imports none of them.

    from rewardtrain.training.trainer import train, latest_checkpoint
    result = train(TrainConfig.from_dict(hyperparameters), train_rows, eval_rows, output_dir=run_dir,
                   on_progress=..., should_stop=..., resume_from=latest_checkpoint(run_dir))
"""
