"""Every page with the Django test client: roles, 404 for outsiders, hidden admin
actions, admin forms, stored XSS, CSP and bounded query counts."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Annotation, Dataset, Image, LabelClass, Membership
from tests.factories import ImageFactory, build_map

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>alert(1)</script>"
ESCAPED_IMG = "&lt;img src=x onerror=alert(1)&gt;"
ESCAPED_SCRIPT = "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
ROLES = ("admin", "reviewer", "annotator")
THUMB = re.compile(r'class="thumb(?: labeled)?"')


def add_images(dataset, n, *, names=None, user=None, start=0):
    """Image rows without files (pages only link to the media views)."""
    return Image.objects.bulk_create(
        [
            ImageFactory.build(
                dataset=dataset,
                original_name=(names[i - start] if names else f"img-{i}.png"),
                uploaded_by=user,
                size_bytes=100,
            )
            for i in range(start, start + n)
        ]
    )


def add_run(dataset, images, *, clusters=3, user=None, classes=()):
    """A succeeded run with an embedding per image (positions on a grid)."""
    suggestions = {image: (classes[i % len(classes)], 0.7) for i, image in enumerate(images)} if classes else None
    return build_map(
        dataset,
        positions={image: (i % 10, i // 10, i % clusters) for i, image in enumerate(images)},
        suggestions=suggestions,
        created_by=user,
        cluster_count=clusters,
        placed_count=2,
        metrics={"final_loss": 0.0123},
        stage_timings={"training": 1.5, "layout": 0.5},
        loss_curve=[0.5, 0.3, 0.2],
    ).run


@pytest.fixture
def team(make_user, make_dataset):
    admin = make_user("alice")
    reviewer = make_user("rita")
    annotator = make_user("anna")
    outsider = make_user("oscar")
    dataset = make_dataset("Digits", admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    other = make_dataset("Other", admin=outsider)
    cat = LabelClass.objects.create(dataset=dataset, name="cat", color="#ff0000", shortcut="c")
    dog = LabelClass.objects.create(dataset=dataset, name="dog", color="#00ff00", shortcut="d")
    images = add_images(dataset, 12, user=admin)
    Annotation.objects.create(image=images[0], dataset=dataset, label_class=cat, author=admin, version=1)
    run = add_run(dataset, images, user=admin, classes=[cat, dog])
    users = {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider}
    return dataset, users, images, run, other


def dataset_pages(dataset, image):
    return {
        "detail": f"/datasets/{dataset.pk}/",
        "map": f"/datasets/{dataset.pk}/map/",
        "clusters": f"/datasets/{dataset.pk}/clusters/",
        "review": f"/datasets/{dataset.pk}/review/",
        "runs": f"/datasets/{dataset.pk}/runs/",
        "label": f"/datasets/{dataset.pk}/label/",
        "image": f"/images/{image.pk}/",
        "upload": f"/datasets/{dataset.pk}/upload/",
    }


# Which role may open which page (upload is admin-only, as in core.permissions).
PAGE_MIN_ROLE = {
    "detail": "annotator",
    "map": "annotator",
    "clusters": "annotator",
    "review": "annotator",
    "runs": "annotator",
    "label": "annotator",
    "image": "annotator",
    "upload": "admin",
}
RANK = {"annotator": 1, "reviewer": 2, "admin": 3}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGE_MIN_ROLE))
def test_page_renders_for_roles_that_may_use_it(client, team, role, page):
    dataset, users, images, run, _ = team
    client.force_login(users[role])
    response = client.get(dataset_pages(dataset, images[0])[page])
    if RANK[role] >= RANK[PAGE_MIN_ROLE[page]]:
        assert response.status_code == 200, response.content[:500]
        assert b"Digits" in response.content
        assert 'id="page-data"' in response.content.decode()
    else:
        assert response.status_code == 403
        assert b"Not allowed" in response.content


@pytest.mark.parametrize("page", list(PAGE_MIN_ROLE))
def test_non_members_get_404_on_every_page(client, team, page):
    dataset, users, images, _, _ = team
    client.force_login(users["outsider"])
    assert client.get(dataset_pages(dataset, images[0])[page]).status_code == 404


def test_missing_dataset_and_image_are_404(client, team):
    _, users, _, _, _ = team
    client.force_login(users["admin"])
    assert client.get("/datasets/999999/").status_code == 404
    assert client.get("/images/999999/").status_code == 404
    assert client.get("/datasets/999999/map/").status_code == 404


def test_anonymous_users_are_sent_to_login(client, team):
    dataset, _, images, _, _ = team
    for url in [*dataset_pages(dataset, images[0]).values(), "/datasets/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_login_page_and_logout_is_a_post(client, team):
    _, users, _, _, _ = team
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-Secret-123"})
    assert response.status_code == 302 and response["Location"] == "/datasets/"
    listing = client.get("/datasets/")
    assert b'action="/accounts/logout/"' in listing.content and b'method="post"' in listing.content
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/datasets/").status_code == 302


def test_dataset_list_shows_only_my_datasets_with_counts(client, team):
    dataset, users, _, _, other = team
    client.force_login(users["annotator"])
    html = client.get("/datasets/").content.decode()
    assert f'data-dataset-id="{dataset.pk}"' in html
    assert f'data-dataset-id="{other.pk}"' not in html
    assert "Other" not in html
    assert re.search(r"<b>12</b><span>images</span>", html)
    assert re.search(r"<b>1</b><span>labeled</span>", html)


def test_annotator_sees_no_admin_actions(client, team):
    dataset, users, images, _, _ = team
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/").content.decode()
    for hidden in (
        "add-class-form",
        "add-member-form",
        "start-run-link",
        "Upload images",
        "Delete dataset",
        f"/datasets/{dataset.pk}/members/",
        f"/datasets/{dataset.pk}/classes/add/",
    ):
        assert hidden not in html
    runs = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert "start-run-form" not in runs and 'id="cancel-run"' not in runs
    review = client.get(f"/datasets/{dataset.pk}/review/").content.decode()
    assert "reviewers and admins resolve" in review
    admin_view = client.get(f"/datasets/{dataset.pk}/")
    client.force_login(users["admin"])
    admin_html = client.get(f"/datasets/{dataset.pk}/").content.decode()
    for shown in ("add-class-form", "add-member-form", "start-run-link", "Delete dataset"):
        assert shown in admin_html
    assert admin_view.status_code == 200


def test_reviewer_sees_review_actions_but_not_admin_forms(client, team):
    dataset, users, _, _, _ = team
    client.force_login(users["reviewer"])
    html = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "add-class-form" not in html and "add-member-form" not in html
    review = client.get(f"/datasets/{dataset.pk}/review/").content.decode()
    assert "reviewers and admins resolve" not in review


@pytest.mark.parametrize("role", ["annotator", "reviewer", "outsider"])
def test_admin_form_posts_are_refused_and_change_nothing(client, team, role, make_user):
    dataset, users, _, _, _ = team
    make_user("newbie")
    client.force_login(users[role])
    expected = 404 if role == "outsider" else 403
    cat = LabelClass.objects.get(dataset=dataset, name="cat")
    posts = [
        (f"/datasets/{dataset.pk}/classes/add/", {"name": "bird"}),
        (f"/datasets/{dataset.pk}/classes/{cat.pk}/edit/", {"name": "tiger"}),
        (f"/datasets/{dataset.pk}/classes/{cat.pk}/delete/", {}),
        (f"/datasets/{dataset.pk}/members/add/", {"username": "newbie", "role": "admin"}),
        (f"/datasets/{dataset.pk}/members/{users['admin'].pk}/role/", {"role": "annotator"}),
        (f"/datasets/{dataset.pk}/members/{users['admin'].pk}/remove/", {}),
        (f"/datasets/{dataset.pk}/edit/", {"name": "Hacked"}),
        (f"/datasets/{dataset.pk}/delete/", {"confirm_name": "Digits"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == expected, url
    assert sorted(LabelClass.objects.filter(dataset=dataset).values_list("name", flat=True)) == ["cat", "dog"]
    assert Membership.objects.filter(dataset=dataset).count() == 3
    assert Membership.objects.get(dataset=dataset, user=users["admin"]).role == "admin"
    assert Dataset.objects.get(pk=dataset.pk).name == "Digits"


def test_admin_manages_classes_members_and_the_dataset(client, team, make_user):
    dataset, users, _, _, _ = team
    newbie = make_user("newbie")
    client.force_login(users["admin"])
    base = f"/datasets/{dataset.pk}"
    client.post(f"{base}/classes/add/", {"name": "bird", "color": "#123456", "shortcut": "b"})
    bird = LabelClass.objects.get(dataset=dataset, name="bird")
    assert (bird.color, bird.shortcut) == ("#123456", "b")
    client.post(f"{base}/classes/{bird.pk}/edit/", {"name": "parrot", "color": "#654321", "shortcut": "p"})
    bird.refresh_from_db()
    assert (bird.name, bird.color, bird.shortcut) == ("parrot", "#654321", "p")
    # A duplicate name is refused with a readable message, not a 500.
    response = client.post(f"{base}/classes/add/", {"name": "cat"}, follow=True)
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    client.post(f"{base}/classes/{bird.pk}/delete/")
    assert not LabelClass.objects.filter(pk=bird.pk).exists()

    client.post(f"{base}/members/add/", {"username": "newbie", "role": "reviewer"})
    assert Membership.objects.get(dataset=dataset, user=newbie).role == "reviewer"
    client.post(f"{base}/members/{newbie.pk}/role/", {"role": "annotator"})
    assert Membership.objects.get(dataset=dataset, user=newbie).role == "annotator"
    response = client.post(f"{base}/members/add/", {"username": "nobody-here", "role": "annotator"}, follow=True)
    assert "No active user" in response.content.decode()
    client.post(f"{base}/members/{newbie.pk}/remove/")
    assert not Membership.objects.filter(dataset=dataset, user=newbie).exists()
    # The last admin cannot demote themself.
    response = client.post(f"{base}/members/{users['admin'].pk}/role/", {"role": "annotator"}, follow=True)
    assert "at least one admin" in response.content.decode()
    assert Membership.objects.get(dataset=dataset, user=users["admin"]).role == "admin"

    client.post(f"{base}/edit/", {"name": "Digits v2", "description": "handwritten"})
    dataset.refresh_from_db()
    assert (dataset.name, dataset.description) == ("Digits v2", "handwritten")
    response = client.post(f"{base}/delete/", {"confirm_name": "wrong"}, follow=True)
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert "Type the dataset" in response.content.decode()
    response = client.post(f"{base}/delete/", {"confirm_name": "Digits v2"})
    assert response.status_code == 302 and response["Location"] == "/datasets/"
    assert not Dataset.objects.filter(pk=dataset.pk).exists()


def test_create_dataset_from_the_list_page(client, make_user):
    user = make_user("maker")
    client.force_login(user)
    response = client.post("/datasets/", {"name": "  Leaves  ", "description": "oak and maple"})
    dataset = Dataset.objects.get(name="Leaves")
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.pk}/upload/"
    assert Membership.objects.get(dataset=dataset, user=user).role == "admin"
    response = client.post("/datasets/", {"name": ""}, follow=True)
    assert Dataset.objects.count() == 1
    assert "Name" in response.content.decode() and "required" in response.content.decode()


def test_dataset_page_thumbnail_grid_is_paginated_and_filterable(client, team):
    dataset, users, images, _, _ = team
    add_images(dataset, 70, start=100)
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert len(THUMB.findall(html)) == 60
    assert "Page 1 of 2" in html and "82 images" in html
    page2 = client.get(f"/datasets/{dataset.pk}/?page=2").content.decode()
    assert len(THUMB.findall(page2)) == 22
    cat = LabelClass.objects.get(dataset=dataset, name="cat")
    only_cat = client.get(f"/datasets/{dataset.pk}/?show={cat.pk}").content.decode()
    assert len(THUMB.findall(only_cat)) == 1 and f'data-image-id="{images[0].pk}"' in only_cat
    unlabeled = client.get(f"/datasets/{dataset.pk}/?show=unlabeled").content.decode()
    assert f'data-image-id="{images[0].pk}"' not in unlabeled
    assert f"/images/{images[1].pk}/thumbnail/" in unlabeled


def test_image_page_shows_class_history_suggestion_and_neighbors(client, team):
    dataset, users, images, run, _ = team
    from labeling.services.annotations import annotation_set

    dog = LabelClass.objects.get(dataset=dataset, name="dog")
    annotation_set(image=images[0], label_class=dog, user=users["annotator"], expected_version=1)
    client.force_login(users["reviewer"])
    html = client.get(f"/images/{images[0].pk}/").content.decode()
    assert "cat → dog" in html and "anna" in html
    assert f'href="/images/{images[1].pk}/"' in html  # next
    assert f"/datasets/{dataset.pk}/map/?cluster=0" in html
    assert 'id="accept-suggestion"' in html


def page_urls(dataset, image):
    return ["/datasets/", *dataset_pages(dataset, image).values()]


def test_csp_header_and_no_inline_script_on_every_page(client, team):
    dataset, users, images, _, _ = team
    client.force_login(users["admin"])
    for url in [*page_urls(dataset, images[0]), "/accounts/login/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
        assert not re.search(r"\son[a-z]+\s*=", html.replace(ESCAPED_IMG, "")), url
        assert "javascript:" not in html


@pytest.mark.parametrize("payload, escaped", [(XSS_IMG, ESCAPED_IMG), (XSS_SCRIPT, ESCAPED_SCRIPT)])
def test_user_typed_text_renders_escaped_on_every_page(client, make_user, make_dataset, payload, escaped):
    admin = make_user("alice")
    member = make_user(username="m" + payload[:20].replace(" ", "")) if False else None  # usernames are validated
    dataset = make_dataset(payload, admin=admin, description=payload)
    cls = LabelClass.objects.create(dataset=dataset, name=payload, color="#ff0000", shortcut="x")
    images = add_images(dataset, 3, names=[payload, f"a{payload}.png", "plain.png"], user=admin)
    Annotation.objects.create(image=images[0], dataset=dataset, label_class=cls, author=admin, version=1)
    add_run(dataset, images, classes=[cls])
    # Usernames cannot hold < > (Django's validator), so a member's display is covered via other fields.
    assert member is None
    client.force_login(admin)
    for url in page_urls(dataset, images[0]):
        html = client.get(url).content.decode()
        assert payload not in html, url
        assert escaped in html, url  # the dataset name in the top bar, at least
    detail = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert detail.count(escaped) >= 4  # name, description, class, file name (title/alt)
    image_page = client.get(f"/images/{images[0].pk}/").content.decode()
    assert image_page.count(escaped) >= 3  # title, file name, class chip


def test_page_json_escapes_script_breakouts(client, make_user, make_dataset):
    admin = make_user("alice")
    dataset = make_dataset("d", admin=admin)
    LabelClass.objects.create(dataset=dataset, name=XSS_SCRIPT, color="#ff0000")
    client.force_login(admin)
    html = client.get(f"/datasets/{dataset.pk}/map/").content.decode()
    data = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    assert "<" not in data and "\\u003C/script\\u003E" in data


def test_plotly_is_served_from_our_static_files():
    # node_modules is installed by `npm ci` (package-lock.json); no CDN anywhere.
    path = finders.find("vendor/plotly/plotly-strict.min.js")
    assert path, "run `npm ci` to install plotly.js-strict-dist-min"
    assert b"scattergl" in open(path, "rb").read()


def query_count(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


@pytest.mark.parametrize("page", ["detail", "map", "clusters", "review", "runs", "label", "image", "upload"])
def test_page_queries_do_not_grow_with_the_dataset(client, make_user, make_dataset, page):
    counts = []
    for n in (50, 500):
        admin = make_user()
        dataset = make_dataset(f"size {n}", admin=admin)
        cat = LabelClass.objects.create(dataset=dataset, name="cat", color="#ff0000")
        images = add_images(dataset, n)
        Annotation.objects.bulk_create(
            [Annotation(image=image, dataset=dataset, label_class=cat, version=1) for image in images[: n // 2]]
        )
        add_run(dataset, images, clusters=5, classes=[cat])
        client.force_login(admin)
        url = dataset_pages(dataset, images[n // 2])[page]
        query_count(client, url)  # warm per-process caches (sessions, content types)
        counts.append(query_count(client, url))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20, counts
