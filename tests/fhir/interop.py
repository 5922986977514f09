#!/usr/bin/env python3
"""FHIR interoperability: a real FHIR client (fhirpy) drives Vellum's FHIR R4
API through a bearer token, and an independent implementation of the FHIR
models (fhir.resources, R4B) validates every resource Vellum returns.

Usage: VELLUM_BIN=target/debug/vellum python3 tests/fhir/interop.py
Needs: pip install "fhir.resources>=7" fhirpy pyotp
Prints "N passed, 0 failed" and exits 0, or lists the failures and exits 1.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pyotp

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError

BIN = os.path.abspath(os.environ.get("VELLUM_BIN", "target/debug/vellum"))
PASSWORD = "Interop-otter-58-lantern"
RESULTS = {"passed": 0, "failed": []}


def check(name, fn):
    try:
        fn()
        RESULTS["passed"] += 1
        print(f"ok    {name}")
    except Exception as e:  # report every failure, then fail the run
        RESULTS["failed"].append(name)
        print(f"FAIL  {name}: {type(e).__name__}: {e}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nhs(i):
    """A valid NHS number from the test range."""
    while True:
        nine = f"999{800000 + i:06d}"
        total = sum(int(c) * w for c, w in zip(nine, range(10, 1, -1)))
        check_digit = 11 - total % 11
        check_digit = 0 if check_digit == 11 else check_digit
        if check_digit != 10:
            return nine + str(check_digit)
        i += 1


class Http:
    """Just enough of a browser: cookies and the CSRF header."""

    def __init__(self, base):
        self.base = base
        self.cookies = {}

    def call(self, method, path, body=None, headers=None):
        u = urllib.parse.urlsplit(self.base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body)
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        csrf = self.cookies.get("vellum-csrf")
        if csrf and method != "GET":
            h["X-CSRF-Token"] = csrf
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, val = v.split(";", 1)[0].partition("=")
                if "max-age=0" in v.lower():
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = val
        conn.close()
        return r.status, (json.loads(data) if data else None)


def main():
    home = tempfile.mkdtemp(prefix="vellum-fhir-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = os.path.join(home, "data")
    subprocess.run([BIN, "admin", "create-user", "--username", "clin", "--role", "clinician",
                    "--password-stdin", "--data-dir", data_dir],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    server = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if Http(base).call("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        web = Http(base)
        web.call("GET", "/api/auth/csrf")
        status, doc = web.call("POST", "/api/auth/login", {"username": "clin", "password": PASSWORD})
        assert status == 200, f"login gave {status}"
        if doc.get("status") == "totp_enrolment_required":
            # The default policy: clinicians enrol in two-factor sign-in first.
            status, setup = web.call("POST", "/api/account/totp/setup", {"password": PASSWORD})
            assert status == 200, f"TOTP setup gave {status}"
            secret = urllib.parse.parse_qs(urllib.parse.urlsplit(setup["otpauth_uri"]).query)["secret"][0]
            status, _ = web.call("POST", "/api/account/totp/enable", {"code": pyotp.TOTP(secret).now()})
            assert status == 200, f"TOTP enable gave {status}"
        status, tok = web.call("POST", "/api/account/tokens", {"name": "fhir interop", "scope": "read-write"})
        assert status == 201, f"token gave {status}"
        token = tok["token"]
        fhir_base = base + "/fhir/R4"
        client = SyncFHIRClient(fhir_base, authorization=f"Bearer {token}")
        state = {}

        def metadata():
            s, doc = Http(base).call("GET", "/fhir/R4/metadata", headers={"Accept": "application/fhir+json"})
            assert s == 200
            CapabilityStatement.model_validate(doc)

        def create():
            p = client.resource("Patient",
                                identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs(1)}],
                                name=[{"use": "official", "family": "Interop", "given": ["Fhirpy"]}],
                                gender="female", birthDate="1984-05-06")
            p.save()
            assert p.id, "the server gave the new patient an id"
            state["id"] = p.id
            Patient.model_validate(p.serialize())

        def read():
            p = client.reference("Patient", state["id"]).to_resource()
            assert p["name"][0]["family"] == "Interop"
            assert p["meta"]["versionId"] == "1"
            Patient.model_validate(p.serialize())

        def search():
            found = client.resources("Patient").search(family="Inter").fetch()
            assert [r.id for r in found] == [state["id"]], found
            by_nhs = client.resources("Patient").search(identifier=f"https://fhir.nhs.uk/Id/nhs-number|{nhs(1)}").fetch()
            assert len(by_nhs) == 1
            s, doc = Http(base).call("GET", "/fhir/R4/Patient?family=Inter",
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
            assert s == 200
            Bundle.model_validate(doc)

        def update():
            # Version-aware update: the client says which version it started from.
            versioned = SyncFHIRClient(fhir_base, authorization=f"Bearer {token}",
                                       extra_headers={"If-Match": 'W/"1"'})
            p = versioned.reference("Patient", state["id"]).to_resource()
            p["gender"] = "other"
            p.save()
            again = client.reference("Patient", state["id"]).to_resource()
            assert again["gender"] == "other" and again["meta"]["versionId"] == "2"
            stale = SyncFHIRClient(fhir_base, authorization=f"Bearer {token}",
                                   extra_headers={"If-Match": 'W/"1"'})
            q = stale.reference("Patient", state["id"]).to_resource()
            q["gender"] = "male"
            try:
                q.save()
                raise AssertionError("a stale update was accepted")
            except BaseFHIRError as refused:
                # fhirpy reports a 412 as MultipleResourcesFound carrying the body.
                outcome = json.loads(str(refused))
                OperationOutcome.model_validate(outcome)
                assert outcome["issue"][0]["code"] == "conflict", outcome
            after = client.reference("Patient", state["id"]).to_resource()
            assert after["gender"] == "other", "the stale update changed nothing"

        def versions():
            auth = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
            s, v1 = Http(base).call("GET", f"/fhir/R4/Patient/{state['id']}/_history/1", headers=auth)
            assert s == 200 and v1["gender"] == "female", (s, v1)
            Patient.model_validate(v1)
            s, hist = Http(base).call("GET", f"/fhir/R4/Patient/{state['id']}/_history", headers=auth)
            assert s == 200 and hist["type"] == "history" and hist["total"] == 2, (s, hist)
            Bundle.model_validate(hist)

        def not_found():
            s, doc = Http(base).call("GET", "/fhir/R4/Patient/00000000-0000-4000-8000-000000000000",
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
            assert s == 404
            OperationOutcome.model_validate(doc)

        def invalid():
            s, doc = Http(base).call("POST", "/fhir/R4/Patient",
                                     {"resourceType": "Patient", "gender": "robot", "name": [{"family": "X"}]},
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
            assert s in (400, 422), s
            OperationOutcome.model_validate(doc)

        def documents():
            s, _ = web.call("POST", f"/api/patients/{state['id']}/letters",
                            {"title": "Clinic letter", "body": "Seen today.", "status": "final"})
            assert s == 201, s
            found = client.resources("DocumentReference").search(patient=state["id"]).fetch()
            assert len(found) == 1
            for d in found:
                DocumentReference.model_validate(d.serialize())
            one = client.reference("DocumentReference", found[0].id).to_resource()
            assert one["subject"]["reference"] == f"Patient/{state['id']}"
            DocumentReference.model_validate(one.serialize())

        for name, fn in [("metadata is a valid CapabilityStatement", metadata),
                         ("fhirpy creates a Patient", create),
                         ("fhirpy reads it back, valid", read),
                         ("fhirpy searches by family and identifier; the Bundle is valid", search),
                         ("fhirpy updates with If-Match; a stale version is refused", update),
                         ("vread and _history give valid resources and a history Bundle", versions),
                         ("an unknown Patient is a valid OperationOutcome 404", not_found),
                         ("an invalid Patient is a valid OperationOutcome 4xx", invalid),
                         ("letters are valid DocumentReferences found by patient", documents)]:
            check(name, fn)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{RESULTS['passed']} passed, {len(RESULTS['failed'])} failed")
    return 0 if not RESULTS["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
