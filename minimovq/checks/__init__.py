"""Exercise checks, one module per lesson: ``minimovq.checks.vae``, ``.vqvae``, ``.vqgan``, ``.movq``, ``.maskgit``.

Each check is called like ``fn = minimovq.checks.vae.reparameterize(fn)``: it prints ✓ or ✗ (with what differs),
returns your function when it passes and the reference otherwise, so the rest of the notebook still runs.
Pass ``strict=True`` to raise ``AssertionError`` instead (tests, graders).
"""
