from django.db import connection
from django.http import JsonResponse
from django.template.loader import render_to_string


def healthz(request):
    """Liveness for load balancers and docker-compose: the database answers and
    templates render with the static files every page links.

    Rendering a tiny template with {% static %} is what makes a broken static
    build fail here (production's manifest storage raises for a file missing
    from the manifest) instead of passing while every page answers 500. The
    template is cached and the manifest is read once per process, so the check
    stays a SELECT 1 plus a dictionary lookup.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    static = render_to_string("healthz.txt").split()
    return JsonResponse({"ok": True, "static": static})
