"""The two ways bench/label_effort.py's annotator reaches the app: the REST API or the services.

Both offer the same few requests a person makes from the pages (label a cluster, label a
selection, label one image, preview and accept suggestions, read and resolve the review queue,
start a run) and the reads a person does by looking (clusters, suggestions on the map, unlabeled
images).  ApiBackend sends real HTTP requests through Django's test client with DRF's APIClient
(URL routing, serializers, permission checks, the views' validation); ServiceBackend calls the
services those views call.  Runs are executed synchronously in this process either way, since
the bench has no worker: the API answers 202 and the bench then does what a worker would.
"""

from __future__ import annotations


class ServiceBackend:
    name = "services"

    def __init__(self, dataset, user):
        self.dataset = dataset
        self.user = user

    def _class(self, class_id):
        from labeling.models import LabelClass

        return LabelClass.objects.get(pk=class_id, dataset=self.dataset)

    # --- reads --------------------------------------------------------------------------------
    def clusters(self) -> list[dict]:
        from embeddings.selectors import dataset_clusters

        return [
            {"id": c["id"], "image_ids": list(c["image_ids"])} for c in dataset_clusters(self.dataset, order="size")
        ]

    def suggestions(self) -> dict[int, int | None]:
        from embeddings.models import ImageEmbedding
        from embeddings.selectors import current_run

        run = current_run(self.dataset)
        return dict(ImageEmbedding.objects.filter(run=run).values_list("image_id", "suggested_class_id"))

    def suggestion_confidences(self) -> dict[int, float]:
        """Image id -> its suggestion's confidence on the current map (0 where there is none)."""
        from embeddings.models import ImageEmbedding
        from embeddings.selectors import current_run

        run = current_run(self.dataset)
        rows = ImageEmbedding.objects.filter(run=run).values_list("image_id", "suggestion_confidence")
        return {image_id: float(conf or 0.0) for image_id, conf in rows}

    def unlabeled_ids(self) -> list[int]:
        from labeling.selectors.datasets import dataset_images

        return list(dataset_images(self.dataset, unlabeled=True).values_list("id", flat=True))

    def review_top(self) -> dict | None:
        from labeling.selectors.review import review_queue_for_dataset

        queue = review_queue_for_dataset(self.dataset, limit=1)
        return dict(queue[0]) if queue else None

    def accept_preview(self) -> list[tuple[int, int]]:
        """(class id, count) of what accepting each class at the default floor would label, most first.

        One dry run per class, as the accept endpoint wants a scope (image_ids, cluster or class)."""
        from labeling.models import LabelClass

        class_ids = LabelClass.objects.filter(dataset=self.dataset).order_by("id").values_list("id", flat=True)
        counts = [(c, self.preview_class(c)) for c in class_ids]
        return sorted(((c, n) for c, n in counts if n), key=lambda row: -row[1])

    def preview_class(self, class_id: int) -> int:
        from django.conf import settings

        from labeling.services.suggestions import suggestions_accept_preview

        preview = suggestions_accept_preview(
            dataset=self.dataset,
            label_class=self._class(class_id),
            min_confidence=settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE,
        )
        return preview.total

    # --- actions ------------------------------------------------------------------------------
    def label_cluster(self, cluster_id: int, class_id: int):
        from labeling.services.annotations import annotations_apply_to_cluster

        annotations_apply_to_cluster(
            dataset=self.dataset, user=self.user, label_class=self._class(class_id), cluster=cluster_id
        )

    def label_image(self, image_id: int, class_id: int):
        from labeling.models import Image
        from labeling.services.annotations import annotation_set

        annotation_set(image=Image.objects.get(pk=image_id), label_class=self._class(class_id), user=self.user)

    def accept_class(self, class_id: int):
        from django.conf import settings

        from labeling.services.suggestions import suggestions_accept

        suggestions_accept(
            dataset=self.dataset,
            user=self.user,
            label_class=self._class(class_id),
            min_confidence=settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE,
        )

    def resolve(self, item: dict, outcome: str, class_id=None, image_ids=None):
        from labeling.services.review import review_item_resolve

        review_item_resolve(
            dataset=self.dataset,
            user=self.user,
            kind=item["kind"],
            object_id=item["id"],
            outcome=outcome,
            label_class=self._class(class_id) if class_id is not None else None,
            image_ids=image_ids,
        )

    def start_run(self, params: dict) -> int:
        from embeddings.services import training_run_start

        return training_run_start(dataset=self.dataset, user=self.user, params=params).pk


class ApiBackend(ServiceBackend):
    """Every read and action a person makes goes through the REST endpoints the pages use."""

    name = "REST API"

    def __init__(self, dataset, user):
        super().__init__(dataset, user)
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.force_authenticate(user=user)
        self.base = f"/api/datasets/{dataset.pk}"

    def _ok(self, response, *codes):
        if response.status_code not in (codes or (200,)):
            raise RuntimeError(
                f"{response.request['REQUEST_METHOD']} {response.request['PATH_INFO']}: "
                f"{response.status_code} {response.content[:300]!r}"
            )
        return response.json()

    def _get(self, path, **query):
        return self._ok(self.client.get(f"{self.base}{path}", query))

    def _post(self, path, body, *codes):
        return self._ok(self.client.post(f"{self.base}{path}", body, format="json"), *codes)

    def clusters(self) -> list[dict]:
        return [{"id": c["id"], "image_ids": c["image_ids"]} for c in self._get("/clusters/", order="size")]

    def suggestions(self) -> dict[int, int | None]:
        data = self._get("/map/")
        return dict(zip(data["image_ids"], data["suggestion"]))

    def suggestion_confidences(self) -> dict[int, float]:
        data = self._get("/map/")
        return {i: float(c or 0.0) for i, c in zip(data["image_ids"], data["confidence"])}

    def unlabeled_ids(self) -> list[int]:
        ids, page = [], 1
        while True:
            data = self._get("/images/", unlabeled="true", page=page, page_size=500)
            ids += [row["id"] for row in data["results"]]
            if not data["next"]:
                return ids
            page += 1

    def review_top(self) -> dict | None:
        items = self._get("/review/", limit=1)
        return items[0] if items else None

    def preview_class(self, class_id: int) -> int:
        # No min_confidence: the API's default floor.
        return self._post("/suggestions/accept/", {"class": class_id, "dry_run": True})["total"]

    def label_cluster(self, cluster_id: int, class_id: int):
        self._post("/annotations/bulk/", {"class": class_id, "cluster": cluster_id})

    def label_image(self, image_id: int, class_id: int):
        self._ok(self.client.put(f"/api/images/{image_id}/annotation/", {"class": class_id}, format="json"))

    def accept_class(self, class_id: int):
        self._post("/suggestions/accept/", {"class": class_id})

    def resolve(self, item: dict, outcome: str, class_id=None, image_ids=None):
        body = {"kind": item["kind"], "id": item["id"], "outcome": outcome}
        if class_id is not None:
            body["class"] = class_id
        if image_ids is not None:
            body["image_ids"] = list(image_ids)
        self._post("/review/resolve/", body)

    def start_run(self, params: dict) -> int:
        return self._post("/runs/", params, 202)["id"]
