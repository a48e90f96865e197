"""The HTML pages fuzzed as schemathesis fuzzes the API: every page, every query
parameter a page reads (and some it does not), hostile values. No answer is a
5xx; a value that cannot mean anything is a 400 page that names the parameter."""

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import build_map

# Every query parameter a page or the reconstructions JSON reads, plus ones none reads.
PARAMETERS = ("show", "page", "order", "class", "cluster", "unlabeled", "color", "n", "next", "format", "page_size")
HOSTILE = (
    "²",
    "١٢",
    "99999999999999999999999",
    "9223372036854775808",
    "2147483648",
    "-1",
    "0",
    "",
    " ",
    "%00",
    "\x00",
    "abc",
    "1e3",
    "1.5",
    "0x10",
    "+1",
    "--1",
    "１",
    "unlabeled",
    "size",
    "cluster",
    "true",
    "<script>",
    "'",
    "x" * 5000,
    "1" * 5000,
)
values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30), st.integers().map(str))


@pytest.fixture
def fuzz_site(db, client, make_user, make_dataset):
    from embeddings.models import RunStatus, TrainingRun
    from labeling.services.annotations import annotations_apply_bulk

    user = make_user("fuzzer")
    dataset = make_dataset("Fuzz", admin=user)
    run, classes, blobs = build_map(dataset, blob_sizes=(6, 6))
    annotations_apply_bulk(dataset=dataset, user=user, label_class=classes[0], image_ids=blobs[0][:3])
    failed = TrainingRun.objects.create(dataset=dataset, status=RunStatus.FAILED, stage="training")
    client.force_login(user)
    d = dataset.pk
    urls = [
        "/datasets/",
        f"/datasets/{d}/",
        f"/datasets/{d}/upload/",
        f"/datasets/{d}/label/",
        f"/datasets/{d}/review/",
        f"/datasets/{d}/map/",
        f"/datasets/{d}/clusters/",
        f"/datasets/{d}/runs/",
        f"/images/{blobs[0][0]}/",
        f"/datasets/{d}/runs/{run.pk}/reconstructions.json",
        f"/datasets/{d}/runs/{failed.pk}/reconstructions.json",
    ]
    return client, urls, classes


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_page_answers_5xx(fuzz_site, data):
    client, urls, _classes = fuzz_site
    url = data.draw(st.sampled_from(urls), label="url")
    query = data.draw(st.dictionaries(st.sampled_from(PARAMETERS), values, min_size=1, max_size=3), label="query")
    response = client.get(url, query)
    assert response.status_code < 500, (url, query, response.status_code)
    if response.status_code == 400 and response["Content-Type"].startswith("text/html"):
        assert "is not valid" in response.content.decode()


@pytest.mark.parametrize(
    "path, query, name",
    [
        ("", {"show": "²"}, "show"),
        ("", {"show": "99999999999999999999999"}, "show"),
        ("", {"show": "123456"}, "show"),  # no such class in this dataset
        ("", {"page": "abc"}, "page"),
        ("", {"page": "0"}, "page"),
        ("map/", {"class": "²"}, "class"),
        ("map/", {"cluster": "²"}, "cluster"),
        ("map/", {"cluster": "-1"}, "cluster"),
        ("map/", {"color": "purple"}, "color"),
        ("map/", {"unlabeled": "maybe"}, "unlabeled"),
        ("label/", {"order": "random"}, "order"),
        ("clusters/", {"order": "¹"}, "order"),
    ],
)
def test_a_bad_page_parameter_is_a_readable_400(fuzz_site, path, query, name):
    client, urls, _classes = fuzz_site
    url = urls[1] + path
    response = client.get(url, query)
    assert response.status_code == 400
    body = response.content.decode()
    assert f"The “{name}” option in this address is not valid" in body
    # The page keeps the dataset's navigation and offers the page without the options.
    assert f'href="{url}"' in body


def test_good_page_parameters_still_work(fuzz_site):
    client, urls, classes = fuzz_site
    overview = urls[1]
    response = client.get(overview, {"show": str(classes[0].pk), "page": "99"})  # past the end: the last page
    assert response.status_code == 200
    assert response.context["page"].number == 1
    assert len(response.context["page"].object_list) == 3
    assert client.get(overview, {"show": "unlabeled"}).context["page"].paginator.count == 9
    assert client.get(overview, {"show": "", "page": ""}).context["page"].paginator.count == 12
    answer = client.get(
        overview + "map/",
        {"class": str(classes[1].pk), "cluster": "1", "unlabeled": "1", "color": "cluster", "utm_source": "mail"},
    )
    assert answer.status_code == 200
    assert answer.context["page_data"]["initial"] == {
        "cluster": 1,
        "class": classes[1].pk,
        "unlabeled": True,
        "color": "cluster",
    }
    assert client.get(overview + "label/", {"order": "upload"}).context["order"] == "upload"
    assert client.get(overview + "clusters/", {"order": "uncertainty"}).context["order"] == "uncertainty"
    bad_n = client.get(urls[9], {"n": "²"})
    assert bad_n.status_code == 400 and bad_n.json()["detail"].startswith("n:")
