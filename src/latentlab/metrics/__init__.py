"""Scores as functions of tensors and models: embeddings (kNN, probe, pairs, t-SNE),
images (PSNR, SSIM, separations), likelihood (ELBO, bits/dim) and separation (a
separator on fixed test mixtures and their JPEG twins)."""
