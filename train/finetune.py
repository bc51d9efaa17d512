"""Fine-tune an encoder on any non-MLM task: python -m train.finetune --config clue/tnews --workdir DIR"""

from train._main import main

if __name__ == "__main__":
    main("finetune")
