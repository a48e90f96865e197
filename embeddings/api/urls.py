from django.urls import path

from . import backbones, retrain, views

urlpatterns = [
    path("datasets/<int:dataset_id>/runs/", views.RunListView.as_view(), name="run-list"),
    path("datasets/<int:dataset_id>/map/", views.MapView.as_view(), name="dataset-map"),
    path("datasets/<int:dataset_id>/retrain/", retrain.RetrainAdviceView.as_view(), name="dataset-retrain"),
    path("datasets/<int:dataset_id>/clusters/", views.ClusterListView.as_view(), name="dataset-clusters"),
    path("datasets/<int:dataset_id>/embeddings/", views.UploadedEmbeddingView.as_view(), name="dataset-embeddings"),
    path("datasets/<int:dataset_id>/backbones/", backbones.BackboneListView.as_view(), name="dataset-backbones"),
    path(
        "datasets/<int:dataset_id>/backbones/<int:backbone_id>/",
        backbones.BackboneDetailView.as_view(),
        name="dataset-backbone",
    ),
    path("runs/<int:run_id>/", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.RunCancelView.as_view(), name="run-cancel"),
    path("images/<int:image_id>/similar/", views.SimilarImagesView.as_view(), name="image-similar"),
]
