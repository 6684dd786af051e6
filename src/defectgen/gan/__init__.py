"""GAN training: the config (`config.TrainConfig`), the loop (`train.train`), the objective
with its phases (`objective`), the loss functions (`losses`), differentiable augmentation
(`augment`) and the optional segmenter guide (`guide`). Nothing is imported here, so that
reading a run's config does not load the training loop."""
