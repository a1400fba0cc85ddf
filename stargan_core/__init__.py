"""StarGAN (Choi et al., CVPR 2018) as a plain PyTorch library: no Prefect, MLflow or Dask here
except in the modules whose job they are."""

__version__ = "0.1.0"
