"""Predictions for a new task: adapt a trained learner on your support images, classify
your query images (``python evaluate.py --run RUN --support DIR --query DIR``).

Support: ``DIR/<class>/<images>``, as many classes as the run's ``num_ways``, K >= 1
images each (K may differ between classes); label i is the i-th class in sorted name
order. Query: a flat folder of images, or ``DIR/<class>/<images>`` with classes among
the support's, which gives the true classes and so an accuracy.

Images are converted as the run's dataset was: RGB or one channel, resized to the run's
input side (square), ImageNet normalisation for RGB datasets, and for runs trained on
Omniglot or Strokes (ink stored bright on black) inverted by default, so that dark ink on
white paper looks like their training images. The learner then adapts exactly as at
validation and test: the run's own inner loop (its inner-loop parameters, mask mode,
m(phi), step size, ``gradient_steps_test`` steps) from the trained theta, and classifies
the query images in as few batches of nearly equal size as keep each within the run's
query-set size (``num_ways`` x ``num_shots_test``), BatchNorm using each batch's
statistics as in training.
"""
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from PIL import ImageOps
from torch.func import functional_call
from torchvision import transforms as T

from maml.inner_loop import adapt
from utils.data.errors import DataUnavailable
from utils.data.folder import class_folders, image_files, open_image
from utils.data.loaders import IMAGENET_MEAN, IMAGENET_STD, INK_DATASETS, normalised


class EpisodeError(DataUnavailable):
    """The support or query folder does not make a task for this run; the message says why."""


@dataclass
class Episode:
    """One task from folders. x: [n, C, H, W] float32; y: [n] int64 labels into classes."""

    classes: List[str]
    x_support: torch.Tensor
    y_support: torch.Tensor
    query_files: List[str]                 # relative to the query folder, "/"-separated
    x_query: torch.Tensor
    y_query: Optional[torch.Tensor]        # None for a flat query folder


def inverts_by_default(dataset):
    """Whether images are inverted for a run on ``dataset`` unless told otherwise."""
    return dataset in INK_DATASETS


def image_transform(data, invert):
    """path -> input tensor [C, H, W] for a run whose data config is ``data``."""
    channels, size = data.shape
    grayscale = channels == 1
    steps = [T.Resize((size, size)), T.ToTensor()]
    if normalised(data.dataset, data.grayscale):
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    to_tensor = T.Compose(steps)

    def load(path):
        image = open_image(path, grayscale)
        return to_tensor(ImageOps.invert(image) if invert else image)
    return load


def _stack(paths, transform):
    return torch.stack([transform(p) for p in paths])


def load_episode(support_dir, query_dir, transform, num_ways):
    """The ``Episode`` of the two folders; EpisodeError when they do not make a
    ``num_ways``-way task."""
    for what, folder in (("support", support_dir), ("query", query_dir)):
        if not os.path.isdir(folder):
            raise EpisodeError(f"--{what} {folder} is not a folder")
    support = class_folders(support_dir)
    if len(support) != num_ways:
        raise EpisodeError(
            f"--support {support_dir} has {len(support)} class folders, but the run "
            f"classifies {num_ways} classes (num_ways {num_ways}): give exactly {num_ways} "
            "subfolders, one per class, each with at least one image")
    empty = [name for name, files in support if not files]
    if empty:
        raise EpisodeError(f"--support class folders without images: "
                           f"{', '.join(os.path.join(support_dir, n) for n in empty)}")
    classes = [name for name, _ in support]
    x_support = _stack([f for _, files in support for f in files], transform)
    y_support = torch.tensor([i for i, (_, files) in enumerate(support) for _ in files])

    flat = image_files(query_dir)
    labelled = class_folders(query_dir)
    if flat and labelled:
        raise EpisodeError(f"--query {query_dir} holds images and class folders: give "
                           "either a flat folder of images or one subfolder per class")
    unknown = [name for name, _ in labelled if name not in classes]
    if unknown:
        raise EpisodeError(f"--query class folders {', '.join(unknown)} are not support "
                           f"classes ({', '.join(classes)})")
    paths = flat or [f for _, files in labelled for f in files]
    if not paths:
        raise EpisodeError(f"--query {query_dir} holds no images")
    y_query = None
    if labelled:
        y_query = torch.tensor([classes.index(n) for n, files in labelled for _ in files])
    files = [os.path.relpath(p, query_dir).replace(os.sep, "/") for p in paths]
    return Episode(classes, x_support, y_support, files, _stack(paths, transform), y_query)


def predict(learner, episode, query_batch):
    """Class probabilities [n_query, num_ways] for the episode's query images after
    adapting ``learner`` (a MetaLearner) on its support set as at test time."""
    device, model = learner.device, learner.model
    xs, ys = episode.x_support.to(device), episode.y_support.to(device)
    model.train()         # BatchNorm uses batch statistics at test time too
    with torch.no_grad():
        theta = {n: p.detach() for n, p in model.named_parameters()}
        masks, theta0 = learner.engine.draw(theta)
    params = dict(theta0)
    for name in learner.rule.names:
        params[name] = params[name].detach().requires_grad_(True)
    params = adapt(model, learner.rule, params, masks, xs, ys, learner.config.inner.steps_test)
    probabilities = []
    with torch.no_grad():
        params = {n: p.detach() for n, p in params.items()}
        # Batches of nearly equal size, none above query_batch: BatchNorm normalises with
        # each batch's statistics, and a small remainder batch classifies worse.
        n_batches = -(-len(episode.x_query) // query_batch)
        for xq in torch.tensor_split(episode.x_query, n_batches):
            logits = functional_call(model, params, (xq.to(device),))
            probabilities.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(probabilities)
