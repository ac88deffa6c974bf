"""The tiny autoencoder config the VQGAN and MoVQ tests share (same taming ddconfig layout, 16 px, seconds on CPU)."""
DD = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=(1, 2),
          num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)
TINY = dict(ddconfig=DD, n_embed=32, embed_dim=8)
