"""minimovq: a course from a VAE to VQ-VAE, VQGAN, MoVQ and a MaskGIT prior.

Import the submodules you need; importing the package has no side effects::

    from minimovq import data, vae, quantize, vqgan, movq, maskgit
    from minimovq.train import Trainer
    from minimovq.profiles import get_profile
"""
__version__ = "0.3.0"
