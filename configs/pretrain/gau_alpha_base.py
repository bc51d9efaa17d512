"""GAU-α base (24 GAU layers, hidden 768) masked-LM pre-training, the published recipe (post 9052 §4.4): LAMB
1.76e-3 without bias correction, batch 512 × 512 tokens (128 × 4 accumulated in the original), and no warmup:
the schedule starts at its peak, {0: 1, 160k: 0.5, 640k: 0.1, 1.28M: 0.01}.

    python -m train.pretrain --config configs/pretrain/gau_alpha_base.py --workdir gs://bucket/run \
        --config.vocab_path=chinese_GAU-alpha-char_L-24_H-768/vocab.txt
    python -m train.compile --config configs/pretrain/gau_alpha_base.py --topology v5e:16x16 --out aot/
"""

from configs.pretrain.recipes import published_recipe


def get_config():
    c = published_recipe("gau_alpha_chinese_char_base", {"0": 1.0, "160000": 0.5, "640000": 0.1, "1280000": 0.01})
    c.lock()
    return c
