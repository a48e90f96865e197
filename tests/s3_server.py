"""A real S3 API for tests and benchmarks: moto's server on a free local port, with credentials checked.

Not a mock of boto3: the code under test talks HTTP to this server exactly as it would
to AWS, MinIO or Ceph. Authentication is on (moto's IAM), so a wrong access key or
secret is refused as a real service refuses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.request

_lock = threading.Lock()
_server: dict = {}

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def s3_server() -> dict:
    """{endpoint_url, region, access_key_id, secret_access_key}, the server started once per process."""
    with _lock:
        if not _server:
            _server.update(_start())
        return dict(_server)


def _start() -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Before authentication is switched on, anyone may create the user whose keys the tests use.
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="simlabel-tests")
    iam.put_user_policy(UserName="simlabel-tests", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="simlabel-tests")["AccessKey"]
    _set_auth(endpoint, True)
    return {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
    }


def s3_client(server: dict | None = None):
    import boto3

    server = server or s3_server()
    return boto3.client(
        "s3",
        endpoint_url=server["endpoint_url"],
        region_name=server["region"],
        aws_access_key_id=server["access_key_id"],
        aws_secret_access_key=server["secret_access_key"],
    )


def _set_auth(endpoint: str, on: bool) -> None:
    """Switch moto's credential checks on (every request after this one) or off."""
    body = b"0" if on else b"1e18"
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10).read()


@contextlib.contextmanager
def presigned_urls_accepted():
    """moto checks credentials only in Authorization headers and fails (500) on a query-string signature,
    so a presigned URL is fetched with its checks off; AWS, MinIO and Ceph verify it."""
    endpoint = s3_server()["endpoint_url"]
    _set_auth(endpoint, False)
    try:
        yield
    finally:
        _set_auth(endpoint, True)
