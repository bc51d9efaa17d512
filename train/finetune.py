"""Fine-tune an encoder on a classification task: python -m train.finetune --config configs/demo.py --workdir DIR"""

from train._main import main

if __name__ == "__main__":
    main("finetune")
