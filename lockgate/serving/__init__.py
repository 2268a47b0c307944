"""The served side: how a model reads requests and answers them, with numpy and pandas only. A Bento carries this room, the core and the exports, nothing of training."""
