# %% [markdown]
# # Deploy an endpoint
#
# `hybridnb.deploy` serves a model bundle with `replicas` processes behind a router:
# load balancing, dynamic batching, health checks, scaling, canaries. Every replica and
# the router speak the Open Inference Protocol (KServe v2) and KServe v1, so standard
# clients work unmodified.

# %% tags=["parameters"]
site = "local"
replicas = 2
epochs = 3               # training, when no bundle_dir is given
bundle_dir = ""          # a bundle (e.g. notebook 03's run/bundle); empty: train one
requests = 200
concurrency = 4
out_dir = "build/notebooks/04_endpoint"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %%
import shutil

if bundle_dir:
    bundle = hybridnb.load_bundle(bundle_dir)
else:
    shutil.rmtree(out / "run", ignore_errors=True)
    trained = hybridnb.fit({"name": "digits-cnn", "model": "digits_cnn", "data": "digits",
                            "epochs": epochs, "seed": 0}, nprocs=2, run_dir=out / "run")
    bundle = hybridnb.load_bundle(trained.bundle)
bundle

# %% [markdown]
# Test images: the held-out split of the built-in digits, as raw pixels (the endpoint
# applies the bundle's own normalization).

# %%
from hybridnb.train.data import load_arrays
from hybridnb.train.spec import DataSpec

arrays = load_arrays(DataSpec(dataset="digits"))
stats = arrays.preprocessing
images = (arrays.x["test"].numpy() * stats["std"] + stats["mean"]).astype("float32")
labels = arrays.y["test"].numpy()
images.shape

# %%
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def send_traffic(endpoint, images, n, concurrency):
    """Send ``n`` one-image requests from ``concurrency`` threads.

    Returns each request's latency in milliseconds and the predicted class.
    """
    def one(i):
        start = time.perf_counter()
        scores = endpoint.predict(images[i % len(images)])
        return (time.perf_counter() - start) * 1000, int(np.argmax(scores[0]))

    with ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(one, range(n)))
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


# %%
import httpx

with hybridnb.deploy(bundle, site=site, replicas=replicas) as endpoint:
    print(endpoint)
    # OIP v2 with binary tensors: the whole test split, 64 images a request.
    scores = np.concatenate([endpoint.predict(images[i:i + 64])
                             for i in range(0, len(images), 64)])
    v1 = httpx.post(f"{endpoint.url}/v1/models/{bundle.name}:predict",  # KServe v1 JSON
                    json={"instances": images[:2].tolist()}, headers=endpoint.headers)
    v2_meta = httpx.get(f"{endpoint.url}/v2/models/{bundle.name}",
                        headers=endpoint.headers).json()
    latency_ms, _ = send_traffic(endpoint, images, requests, concurrency)
    endpoint.scale(replicas + 1)
    scaled = endpoint.status()
print(f"v1 answered {v1.status_code}: {len(v1.json()['predictions'])} predictions")
print("v2 metadata:", v2_meta["inputs"])
print(f"after scale: {scaled['healthy']} healthy replicas; closed: {endpoint.closed}")

# %%
accuracy = float(np.mean(scores.argmax(1) == labels))
trained_accuracy = bundle.meta["metrics"].get("test_accuracy")
p50, p99 = (float(np.percentile(latency_ms, q)) for q in (50, 99))
hybridnb.record("test_accuracy", trained_accuracy)
hybridnb.record("endpoint_accuracy", accuracy)
hybridnb.record("test_images", len(labels))
hybridnb.record("client_p50_ms", round(p50, 2))
hybridnb.record("client_p99_ms", round(p99, 2))
hybridnb.record("v1_status", v1.status_code)
hybridnb.record("replicas_after_scale", scaled["healthy"])
print(f"endpoint accuracy {accuracy:.2%} on the {len(labels)} test images "
      f"(training measured {trained_accuracy:.2%})")
print(f"{len(latency_ms)} requests from {concurrency} threads, client-side: "
      f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.subplots()
ax.hist(latency_ms, bins=40)
ax.axvline(p50, color="k", linestyle="--", label=f"p50 {p50:.1f} ms")
ax.axvline(p99, color="r", linestyle="--", label=f"p99 {p99:.1f} ms")
ax.set_xlabel("client-side latency (ms)")
ax.set_ylabel("requests")
ax.legend()
fig.savefig(out / "latency.png", dpi=80)
fig
