from django.urls import path

from . import views

app_name = "embeddings"

urlpatterns = [
    path("datasets/<int:dataset_id>/map/", views.dataset_map, name="dataset-map"),
    path("datasets/<int:dataset_id>/clusters/", views.dataset_clusters, name="dataset-clusters"),
    path("datasets/<int:dataset_id>/runs/", views.dataset_runs, name="dataset-runs"),
    path(
        "datasets/<int:dataset_id>/runs/<int:run_id>/reconstructions.json",
        views.run_reconstructions,
        name="run-reconstructions",
    ),
]
