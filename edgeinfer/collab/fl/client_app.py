"""The site's Flower ``ClientApp``: train on local synthetic data, send back weights only.

Each SuperNode is started with ``--node-config 'site=K'``; the site generates its own data
(:mod:`data`) inside this process, trains the global model on it for a few local epochs and
replies with the weights (or int8 deltas and their scales when the server asks for
compression) and two scalars: the number of examples and the training loss.
"""

from __future__ import annotations

import os

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgeinfer.collab.fl.compress import compress_delta
from edgeinfer.collab.fl.data import site_data
from edgeinfer.collab.fl.model import TrainConfig, get_arrays, make_model, set_arrays, train

app = ClientApp()


def _record(arrays: dict) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def _site(context: Context) -> int:
    return int(context.node_config.get("site", context.node_config.get("partition-id", 0)))


@app.train()
def train_round(msg: Message, context: Context) -> Message:
    """One local round: load the global weights, train on this site's data, reply."""
    import torch

    torch.set_num_threads(int(os.environ.get("EDGEINFER_FL_THREADS", "1")))
    cfg = msg.content["config"]
    site = _site(context)
    x, y = site_data(site, int(cfg["samples"]), seed=int(cfg["seed"]))
    model = make_model()
    base = {k: a.numpy() for k, a in msg.content["arrays"].items()}
    set_arrays(model, base)
    tc = TrainConfig(epochs=int(cfg["local-epochs"]), lr=float(cfg["lr"]),
                     proximal_mu=float(cfg.get("proximal-mu", 0.0)),
                     seed=int(cfg["server-round"]) * 100 + site)
    loss = train(model, x, y, tc)
    local = get_arrays(model)
    metrics = MetricRecord({"num-examples": len(x), "train-loss": loss})
    if bool(cfg["compress"]):
        q, scales = compress_delta(local, base)
        content = RecordDict({"arrays": _record(q), "metrics": metrics,
                              "scales": ConfigRecord(scales)})
    else:
        content = RecordDict({"arrays": _record(local), "metrics": metrics})
    return Message(content=content, reply_to=msg)
