"""StarGAN (Choi et al. 2018, "StarGAN: Unified Generative Adversarial Networks for Multi-Domain
Image-to-Image Translation") as a label-conditioned editor: it edits an image's factors without a
latent space. A run exports to a model of kind "editor" (latentdial/manifest.py): a ``classifier``
graph reads an image's factor codes, an ``editor`` graph redraws the image with target codes, and
the factor card describes the codes as the semi-supervised VAE's card describes its named dims.

Modules: config (the TOML config), codes (the code layout and the classification loss),
networks (G, D and the classifier graph), trainer (the loop and the run directory), samples (the
sample sheet), run (reading a run back), cli (``latentdial train``). Export: export/editor.py.
"""
