"""Masked-LM pre-training: python -m train.pretrain --config configs/pretrain/tiny_mlm.py --workdir DIR"""

from train._main import main

if __name__ == "__main__":
    main("pretrain")
