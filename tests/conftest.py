import os

# Never touch a hub in tests (a miss costs 24-48 s).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
