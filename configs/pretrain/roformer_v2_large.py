"""RoFormerV2 large (24 layers, hidden 1024) masked-LM pre-training, the published recipe (post 8998 §3.4):
LAMB 1.76e-3 without bias correction, weight decay 0.01, batch 512 × 512 tokens, whole-word masking, warmup over
32k steps then piecewise-linear decay {32k: 1, 320k: 0.5, 1.28M: 0.1, 2.56M: 0.01}. The recipe reached batch 512
as 64 × 8 accumulated micro-batches on two A100s; a pod runs it as one step.

    python -m train.pretrain --config configs/pretrain/roformer_v2_large.py --workdir gs://bucket/run \
        --config.data.vocab_path=chinese_roformer-v2-char_L-24_H-1024_A-16/vocab.txt
    python -m train.compile --config configs/pretrain/roformer_v2_large.py --topology v5e:16x16 --out aot/
"""

from configs.pretrain.recipes import published_recipe


def get_config():
    c = published_recipe("roformer_v2_chinese_char_large",
                         {"32000": 1.0, "320000": 0.5, "1280000": 0.1, "2560000": 0.01})
    c.lock()
    return c
