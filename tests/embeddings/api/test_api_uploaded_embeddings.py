"""POST/GET /api/datasets/{id}/embeddings/: each format, every validation rule, the size limit, roles, and
nothing stored when anything is wrong; starting a run with embedding=uploaded."""

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from embeddings import storage
from embeddings.models import UPLOADED_EMBEDDINGS_PREFIX, TrainingRun, UploadedEmbedding
from embeddings.selectors.uploaded_embeddings import uploaded_embedding_arrays
from tests.factories import bulk_images

N = 12


@pytest.fixture(autouse=True)
def _no_stored_vectors():
    """The media folder lives for the session: each test starts and ends without uploaded vectors."""
    storage.delete_tree(UPLOADED_EMBEDDINGS_PREFIX)
    yield
    storage.delete_tree(UPLOADED_EMBEDDINGS_PREFIX)


@pytest.fixture
def team(make_user, make_dataset):
    admin, annotator, outsider = make_user("alice"), make_user("anna"), make_user("oscar")
    dataset = make_dataset("Photos", admin=admin, members={annotator: "annotator"})
    other = make_dataset("Other", admin=outsider)
    images = bulk_images(dataset, N)
    foreign = bulk_images(other, 2)
    return SimpleNamespace(
        admin=admin,
        annotator=annotator,
        outsider=outsider,
        dataset=dataset,
        ids=[image.pk for image in images],
        foreign_ids=[image.pk for image in foreign],
    )


def url(dataset):
    return reverse("dataset-embeddings", kwargs={"dataset_id": dataset.pk})


def vectors(n=N, dim=8, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(dtype)


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_file(array, name="vectors.npy"):
    return SimpleUploadedFile(name, npy(array), content_type="application/octet-stream")


def stored_files():
    return sorted(storage.walk(UPLOADED_EMBEDDINGS_PREFIX))


def assert_nothing_stored(response, status=400):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"detail", "code"} and body["detail"], body
    assert not UploadedEmbedding.objects.exists()
    assert stored_files() == []
    return body


def assert_stored(response, team, expected_ids, expected_vectors):
    assert response.status_code == 201, response.content
    body = response.json()
    upload = UploadedEmbedding.objects.get()
    assert body["id"] == upload.pk and body["count"] == len(expected_ids) == upload.count
    assert body["dim"] == expected_vectors.shape[1] == upload.dim and body["created_by"] == "alice"
    assert body["images_without_vector"] == N - len(expected_ids)
    ids, stored = uploaded_embedding_arrays(upload)
    order = np.argsort(expected_ids)
    assert ids.dtype == np.int64 and stored.dtype == np.float32
    assert ids.tolist() == sorted(expected_ids)
    np.testing.assert_array_equal(stored, np.asarray(expected_vectors, dtype=np.float32)[order])
    assert all(name.startswith(f"{upload.folder}/") for name in stored_files())
    return body


# --- the formats ------------------------------------------------------------------------------------------


def test_json_upload_then_get_describes_it(team, client_for):
    client = client_for(team.admin)
    assert client.get(url(team.dataset)).status_code == 404
    values = vectors()
    ids = team.ids[::-1]  # any order: stored sorted by image id
    response = client.post(url(team.dataset), {"image_ids": ids, "vectors": values.tolist()}, format="json")
    body = assert_stored(response, team, ids, values)
    described = client_for(team.annotator).get(url(team.dataset))
    assert described.status_code == 200 and described.json() == body


def test_npy_float32_with_a_json_list_of_ids(team, client_for):
    values = vectors()
    response = client_for(team.admin).post(
        url(team.dataset), {"vectors": npy_file(values), "image_ids": json.dumps(team.ids)}, format="multipart"
    )
    assert_stored(response, team, team.ids, values)


def test_npy_float64_with_a_npy_of_ids_covering_part_of_the_dataset(team, client_for):
    values = vectors(n=5, dim=3, dtype=np.float64)
    ids = np.asarray(team.ids[:5], dtype=np.int32)
    response = client_for(team.admin).post(
        url(team.dataset),
        {"vectors": npy_file(values), "image_ids": npy_file(ids, "image_ids.npy")},
        format="multipart",
    )
    body = assert_stored(response, team, ids.tolist(), values)
    assert body["images_without_vector"] == N - 5


def test_npy_in_fortran_order(team, client_for):
    values = np.asfortranarray(vectors())
    response = client_for(team.admin).post(
        url(team.dataset), {"vectors": npy_file(values), "image_ids": json.dumps(team.ids)}, format="multipart"
    )
    assert_stored(response, team, team.ids, values)


def csv_text(ids, values, header=True):
    lines = ["image_id," + ",".join(f"v{j}" for j in range(values.shape[1]))] if header else []
    lines += [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in zip(ids, values)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header", [True, False])
def test_csv_body(team, client_for, header):
    values = vectors(dim=4)
    response = client_for(team.admin).post(
        url(team.dataset), csv_text(team.ids, values, header), content_type="text/csv"
    )
    assert_stored(response, team, team.ids, values)


def test_csv_file_in_a_form(team, client_for):
    values = vectors(dim=4)
    upload = SimpleUploadedFile("vectors.csv", csv_text(team.ids, values).encode(), content_type="text/csv")
    response = client_for(team.admin).post(url(team.dataset), {"vectors": upload}, format="multipart")
    assert_stored(response, team, team.ids, values)


def test_a_new_upload_replaces_the_previous_one_and_its_files(team, client_for, django_capture_on_commit_callbacks):
    client = client_for(team.admin)
    first = client.post(url(team.dataset), {"image_ids": team.ids, "vectors": vectors().tolist()}, format="json")
    old_folder = UploadedEmbedding.objects.get(pk=first.json()["id"]).folder
    with django_capture_on_commit_callbacks(execute=True):  # the old files go after the commit
        second = client.post(
            url(team.dataset), {"image_ids": team.ids, "vectors": vectors(dim=5, seed=1).tolist()}, format="json"
        )
    assert second.status_code == 201 and second.json()["dim"] == 5
    upload = UploadedEmbedding.objects.get()  # only the latest is kept
    assert upload.pk == second.json()["id"]
    assert not any(name.startswith(old_folder) for name in stored_files())
    assert client.get(url(team.dataset)).json()["id"] == upload.pk


def test_an_invalid_upload_keeps_the_previous_one(team, client_for):
    client = client_for(team.admin)
    first = client.post(url(team.dataset), {"image_ids": team.ids, "vectors": vectors().tolist()}, format="json")
    files = stored_files()
    bad = client.post(url(team.dataset), {"image_ids": team.ids, "vectors": vectors(dim=1).tolist()}, format="json")
    assert bad.status_code == 400
    assert list(UploadedEmbedding.objects.values_list("pk", flat=True)) == [first.json()["id"]]
    assert stored_files() == files


# --- validation: a clear 400 and nothing stored -------------------------------------------------------------


def json_cases(team):
    ids, good = team.ids, vectors().tolist()
    return {
        "dimension 1": ({"image_ids": ids, "vectors": vectors(dim=1).tolist()}, "2 to 4096 values"),
        "dimension 4097": ({"image_ids": ids[:1], "vectors": vectors(n=1, dim=4097).tolist()}, "2 to 4096 values"),
        "rows of different lengths": ({"image_ids": ids[:2], "vectors": [[1.0, 2.0], [1.0, 2.0, 3.0]]}, "same number"),
        "beyond float32": ({"image_ids": ids, "vectors": [[1e39] * 8] + good[1:]}, "not finite"),
        "a repeated id": ({"image_ids": [ids[0]] + ids[:-1], "vectors": good}, "more than once"),
        "an image of another dataset": ({"image_ids": [team.foreign_ids[0]] + ids[1:], "vectors": good}, "not images"),
        "an unknown id": ({"image_ids": [10**9] + ids[1:], "vectors": good}, "not images of this dataset"),
        "fewer ids than vectors": ({"image_ids": ids[:-1], "vectors": good}, "one id per vector"),
        "text values": ({"image_ids": ids[:1], "vectors": [["1.0", "2.0"]]}, "only numbers"),
        "fractional ids": ({"image_ids": [float(i) + 0.5 for i in ids], "vectors": good}, "whole numbers"),
        "no vectors": ({"image_ids": [], "vectors": []}, "vectors"),
        "missing key": ({"vectors": good}, "image_ids"),
        "extra key": ({"image_ids": ids, "vectors": good, "normalize": True}, "image_ids"),
        "vectors not a list": ({"image_ids": ids, "vectors": "1,2,3"}, "list"),
        "3-D vectors": ({"image_ids": ids[:1], "vectors": [[[1.0, 2.0]]]}, "list of vectors"),
    }


CASE_NAMES = list(json_cases(SimpleNamespace(ids=list(range(N)), foreign_ids=[0])))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_invalid_json_is_refused_whole(team, client_for, case):
    body, message = json_cases(team)[case]
    refused = assert_nothing_stored(client_for(team.admin).post(url(team.dataset), body, format="json"))
    assert message in refused["detail"], refused
    assert refused["code"] == "invalid"


def test_nan_in_json_is_refused(team, client_for):
    text = json.dumps({"image_ids": team.ids[:1], "vectors": [[1.0, 2.0]]}).replace("[1.0", "[NaN")
    response = client_for(team.admin).post(url(team.dataset), text, content_type="application/json")
    assert "NaN" in assert_nothing_stored(response)["detail"]
    # Python's json reads 1e400 as infinity: refused like any other non-finite value.
    text = json.dumps({"image_ids": team.ids[:1], "vectors": [[1.0, 2.0]]}).replace("1.0", "1e400")
    response = client_for(team.admin).post(url(team.dataset), text, content_type="application/json")
    assert "not finite" in assert_nothing_stored(response)["detail"]


def test_non_finite_values_in_npy_and_csv_are_refused(team, client_for):
    values = vectors()
    values[3, 2] = np.inf
    client = client_for(team.admin)
    response = client.post(
        url(team.dataset), {"vectors": npy_file(values), "image_ids": json.dumps(team.ids)}, format="multipart"
    )
    assert f"first for image {team.ids[3]}" in assert_nothing_stored(response)["detail"]
    values = vectors()
    values[0, 0] = np.nan
    text = csv_text(team.ids, values)
    assert (
        "not finite" in assert_nothing_stored(client.post(url(team.dataset), text, content_type="text/csv"))["detail"]
    )


class Boom:
    """Unpickling this would write a file: proof the object array was never unpickled."""

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.write_text, (pathlib.Path(default_storage.path("unpickled.txt")), "ran"))


def test_npy_files_are_read_without_unpickling_and_checked(team, client_for):
    client = client_for(team.admin)
    ids_field = json.dumps(team.ids)
    buf = io.BytesIO()
    np.save(buf, np.array([Boom()] * N, dtype=object), allow_pickle=True)
    pickled = SimpleUploadedFile("vectors.npy", buf.getvalue())
    cases = {
        "object array": ({"vectors": pickled, "image_ids": ids_field}, "must hold floating-point numbers"),
        "integer vectors": ({"vectors": npy_file(np.ones((N, 4), np.int64)), "image_ids": ids_field}, "floating"),
        "truncated": (
            {"vectors": SimpleUploadedFile("v.npy", npy(vectors())[:-7]), "image_ids": ids_field},
            "does not hold",
        ),
        "header only": ({"vectors": SimpleUploadedFile("v.npy", b"\x93NUMPY\x01\x00"), "image_ids": ids_field}, "npy"),
        "float ids": ({"vectors": npy_file(vectors()), "image_ids": npy_file(np.ones(N), "ids.npy")}, "whole numbers"),
        "ids not json": ({"vectors": npy_file(vectors()), "image_ids": "1, 2"}, "JSON list"),
        "no ids": ({"vectors": npy_file(vectors())}, "image_ids"),
        "no vectors": ({"image_ids": ids_field}, "vectors"),
        "unknown field": ({"vectors": npy_file(vectors()), "image_ids": ids_field, "dim": "8"}, "Unknown field"),
        "not npy nor csv": ({"vectors": SimpleUploadedFile("v.bin", b"\x00\x01\x02binary")}, "CSV"),
        "csv with ids": (
            {"vectors": SimpleUploadedFile("v.csv", csv_text(team.ids, vectors()).encode()), "image_ids": ids_field},
            "first column",
        ),
    }
    for name, (form, message) in cases.items():
        response = client.post(url(team.dataset), form, format="multipart")
        assert message in assert_nothing_stored(response)["detail"], name
    assert not default_storage.exists("unpickled.txt")


def test_invalid_csv_is_refused(team, client_for):
    client = client_for(team.admin)
    good = csv_text(team.ids, vectors(dim=3), header=False).splitlines()
    cases = {
        "ragged": "\n".join(good[:-1] + [good[-1] + ",1.0"]),
        "text in a value": "\n".join(good[:-1] + [good[-1].replace(",", ",abc,", 1)]),
        "fractional id": "\n".join([good[0].replace(str(team.ids[0]), f"{team.ids[0]}.5", 1)] + good[1:]),
        "only a header": "image_id,v0,v1\n",
        "only ids": "\n".join(str(i) for i in team.ids),
        "not utf-8": b"\xff\xfe\x00bad",
    }
    for name, text in cases.items():
        response = client.post(url(team.dataset), text, content_type="text/csv")
        assert_nothing_stored(response), name


def test_the_size_limit_is_its_own_setting(team, client_for, settings):
    settings.SIMLABEL_MAX_EMBEDDING_BYTES = 2000
    settings.SIMLABEL_MAX_JSON_BYTES = 100  # the API's usual JSON limit does not apply here
    client = client_for(team.admin)
    small = {"image_ids": team.ids[:2], "vectors": [[1.0, 2.0], [3.0, 4.0]]}
    assert client.post(url(team.dataset), small, format="json").status_code == 201
    UploadedEmbedding.objects.all().delete()
    for name in stored_files():
        default_storage.delete(name)
    big = {"image_ids": team.ids, "vectors": vectors(dim=64).tolist()}
    body = assert_nothing_stored(client.post(url(team.dataset), big, format="json"), status=413)
    assert body["code"] == "too_large"
    form = {"vectors": npy_file(vectors(dim=64)), "image_ids": json.dumps(team.ids)}
    assert_nothing_stored(client.post(url(team.dataset), form, format="multipart"), status=413)


# --- who may ----------------------------------------------------------------------------------------------


def test_roles(team, client_for):
    body = {"image_ids": team.ids, "vectors": vectors().tolist()}
    refused = client_for(team.annotator).post(url(team.dataset), body, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    outsider = client_for(team.outsider)
    for hidden in (outsider.get(url(team.dataset)), outsider.post(url(team.dataset), body, format="json")):
        assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert client_for(None).post(url(team.dataset), body, format="json").status_code == 401
    assert not UploadedEmbedding.objects.exists() and stored_files() == []
    assert client_for(team.admin).post(url(team.dataset), body, format="json").status_code == 201


def test_deleting_the_dataset_deletes_its_vectors(team, client_for, django_capture_on_commit_callbacks):
    client = client_for(team.admin)
    client.post(url(team.dataset), {"image_ids": team.ids, "vectors": vectors().tolist()}, format="json")
    assert stored_files()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(reverse("dataset-detail", kwargs={"dataset_id": team.dataset.pk}))
    assert response.status_code == 204
    assert stored_files() == [] and not UploadedEmbedding.objects.exists()


# --- starting a run on them -------------------------------------------------------------------------------


def test_a_run_on_uploaded_vectors_needs_a_vector_for_every_image(team, client_for, settings):
    client = client_for(team.admin)
    runs = reverse("run-list", kwargs={"dataset_id": team.dataset.pk})
    none = client.post(runs, {"embedding": "uploaded"}, format="json")
    assert none.status_code == 400 and "no uploaded vectors" in none.json()["detail"]
    partial = {"image_ids": team.ids[:9], "vectors": vectors(n=9).tolist()}
    assert client.post(url(team.dataset), partial, format="json").status_code == 201
    missing = client.post(runs, {"embedding": "uploaded"}, format="json")
    assert missing.status_code == 400 and missing.json()["missing_count"] == 3
    assert "3 image(s) have no uploaded vector" in missing.json()["detail"]
    # The command line refuses it the same way, before anything is queued.
    with pytest.raises(CommandError, match="3 image\\(s\\) have no uploaded vector"):
        call_command("start_run", str(team.dataset.pk), "--param", "embedding=uploaded", stdout=io.StringIO())
    assert not TrainingRun.objects.exists()
    assert client.post(runs, {"embedding": "backbone"}, format="json").status_code == 400
    full = {"image_ids": team.ids, "vectors": vectors().tolist()}
    assert client.post(url(team.dataset), full, format="json").status_code == 201
    started = client.post(runs, {"embedding": "uploaded"}, format="json")
    assert started.status_code == 202, started.json()
    run = TrainingRun.objects.get(pk=started.json()["id"])
    assert run.params["embedding"] == "uploaded"
    detail = client.get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
    assert detail["params"]["embedding"] == "uploaded"


def test_runs_default_to_the_autoencoder(team, client_for):
    runs = reverse("run-list", kwargs={"dataset_id": team.dataset.pk})
    started = client_for(team.admin).post(runs, {}, format="json")
    assert started.status_code == 202
    assert TrainingRun.objects.get().params["embedding"] == "autoencoder"


def test_cleanup_removes_upload_folders_no_row_names_once_they_are_an_hour_old(team, client_for):
    import os
    import time

    from django.core.files.base import ContentFile

    from embeddings.services.artifacts import run_artifacts_cleanup_orphans

    client = client_for(team.admin)
    client.post(url(team.dataset), {"image_ids": team.ids, "vectors": vectors().tolist()}, format="json")
    live = UploadedEmbedding.objects.get().folder
    prefix = f"{UPLOADED_EMBEDDINGS_PREFIX}/{team.dataset.pk}"
    old = default_storage.save(f"{prefix}/killed-request/vectors.npy", ContentFile(b"x"))
    young = default_storage.save(f"{prefix}/being-written/vectors.npy", ContentFile(b"x"))
    gone = default_storage.save(f"{UPLOADED_EMBEDDINGS_PREFIX}/999999/abc/vectors.npy", ContentFile(b"x"))
    two_hours_ago = time.time() - 7200
    os.utime(default_storage.path(old), (two_hours_ago, two_hours_ago))
    removed = run_artifacts_cleanup_orphans()
    assert old in removed and gone in removed and young not in removed
    assert default_storage.exists(young) and all(name.startswith(live) or name == young for name in stored_files())
