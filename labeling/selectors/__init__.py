"""Reads for the labeling app (HackSoft-style selectors).

`labeling.selectors.datasets` holds datasets, members, classes, images and
history; `labeling.selectors.review` the review queue. Import from the
submodules or from here.
"""

from .datasets import (  # noqa: F401
    IMAGE_LIST_FILTERS,
    dataset_classes,
    dataset_images,
    dataset_members,
    dataset_with_counts,
    datasets_for_user,
    image_annotation,
    image_history,
    image_neighbors,
    image_positions,
    label_actions,
    label_class_for_update,
    label_class_in_dataset,
)
from .review import review_queue_for_dataset  # noqa: F401
