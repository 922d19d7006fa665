"""The benchmark datasets as nnU-Net v2 raw datasets: synthetic ellipses (synthetic.py), the synthetic boundary
benchmark (boundary.py) and Colin27 + AAL (colin27.py)."""
