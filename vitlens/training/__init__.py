"""Training the zoo, one floor above the analyses (a trained ViT's manifest entry records its
attention distances): the loop (:mod:`~vitlens.training.loop`, with
:mod:`~vitlens.training.augment` and the masked-patch objective of
:mod:`~vitlens.training.masked`), the files it writes (:mod:`~vitlens.training.checkpoints`),
a registered model trained and recorded (:mod:`~vitlens.training.zoo`), and the queue that
trains the zoo's plan (:mod:`~vitlens.training.queue`)."""
