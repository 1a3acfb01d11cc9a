"""Contact import from CSV: checked on arrival (a bad file is a 400 and keeps nothing),
then a job per chunk of rows, resumable; dedupe by email; per-row errors with line numbers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from core.models import EventRecord, ScheduledJob
from crm import imports, services, tasks
from crm.models import Contact, ContactImport, ImportStatus

pytestmark = pytest.mark.django_db

CSV = (
    "Email,Phone,First Name,Last Name,Tags,Plan\n"
    "ada@example.com,+1 415 555 0123,Ada,Lovelace,vip;beta,pro\n"
    "\n"
    "BOB@example.com,,Robert,,,\n"  # Bob exists: updated, his blank cells keep what he had
    "not-an-email,,Eve,,,\n"
    ",,Nobody,,,\n"
    "carl@example.com,12345,Carl,,,\n"
    "dora@example.com,,Dora,,bad/tag,\n"
    '"erin@example.com","+442071838750","Erin ""E""",,vip,\n'
)


def upload(caller: Any, content: bytes | str, name: str = "contacts.csv") -> Any:
    raw = content.encode() if isinstance(content, str) else content
    file = io.BytesIO(raw)
    file.name = name
    return caller.client.post("/crm/contacts/import/", {"file": file}, format="multipart")


def run_jobs() -> int:
    """Run the queued import jobs (kept as rows inside the test's transaction), each once."""
    ran = 0
    while job := ScheduledJob.objects.filter(task=tasks.import_contacts.name, status="pending").first():
        job.status = "done"
        job.save(update_fields=["status"])
        tasks.import_contacts.run(import_id=job.kwargs["import_id"], org_id=job.kwargs["org_id"])
        ran += 1
    return ran


def test_an_import_creates_updates_and_reports_each_failed_row(owner):
    bob = services.contact_create(
        org=owner.org, actor=owner.user, email="bob@example.com", phone="+14155550100", last_name="Builder"
    )

    response = upload(owner, CSV)

    assert response.status_code == 202, response.content
    body = response.data
    assert body["status"] == "queued" and body["total"] == 7 and body["done"] == 0
    assert response.headers["Location"] == f"/crm/imports/{body['id']}/"
    assert run_jobs() == 1

    report = owner.client.get(f"/crm/imports/{body['id']}/").data
    assert report["status"] == "done" and report["finished_at"]
    assert (report["done"], report["created"], report["updated"], report["failed"]) == (7, 2, 1, 4)
    assert [(entry["row"], sorted(entry["errors"])) for entry in report["errors"]] == [
        (5, ["email"]),
        (6, ["email"]),
        (7, ["phone"]),
        (8, ["name"]),
    ]
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.phone, ada.first_name, ada.last_name, ada.source) == (
        "+14155550123",
        "Ada",
        "Lovelace",
        "import",
    )
    assert ada.custom_fields == {"plan": "pro"}
    assert services.tag_names(ada) == ["beta", "vip"]
    bob.refresh_from_db()
    assert (bob.email, bob.phone, bob.first_name, bob.last_name) == (
        "bob@example.com",
        "+14155550100",
        "Robert",
        "Builder",
    )
    assert Contact.objects.get(email="erin@example.com").first_name == 'Erin "E"'
    created = EventRecord.objects.filter(name="contact.created", data__source="import")
    assert sorted(e.data["email"] for e in created) == ["ada@example.com", "erin@example.com"]
    assert EventRecord.objects.filter(name="tag.added").count() == 3
    assert not Contact.objects.filter(email__in=["carl@example.com", "dora@example.com"]).exists()
    assert ContactImport.objects.get(pk=body["id"]).content == ""  # not kept once done


def test_an_import_runs_a_chunk_per_job_and_a_redelivered_job_repeats_no_row(owner, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    rows = "".join(f"p{n}@example.com,P{n}\n" for n in range(5))
    body = upload(owner, "email,first_name\n" + rows).data
    [first] = ScheduledJob.objects.filter(task=tasks.import_contacts.name)

    tasks.import_contacts.run(import_id=body["id"], org_id=str(owner.org.pk))
    # The worker died after that commit, before its ack: the same message comes again.
    tasks.import_contacts.run(import_id=first.kwargs["import_id"], org_id=first.kwargs["org_id"])
    assert ContactImport.objects.get(pk=body["id"]).done == 4
    ScheduledJob.objects.filter(pk=first.pk).update(status="done")
    run_jobs()

    job = ContactImport.objects.get(pk=body["id"])
    assert (job.status, job.done, job.created, job.failed) == (ImportStatus.DONE, 5, 5, 0)
    assert Contact.objects.count() == 5
    assert EventRecord.objects.filter(name="contact.created").count() == 5
    # Done: any job of it still in flight finds nothing left.
    assert tasks.import_contacts.run(import_id=body["id"], org_id=str(owner.org.pk)) == 5
    assert Contact.objects.count() == 5


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("email\nada@example.com\n".encode("utf-16"), "not UTF-8"),
        (b"email\nada@exa\x00mple.com\n", "NUL"),
        (b"", "empty"),
        (b"first_name,last_name\nAda,Lovelace\n", "No email or phone column"),
        (b'email\n"ada@example.com\n', "Not a CSV"),
        (b"email,Email\nada@example.com,x\n", "named twice"),
    ],
)
def test_a_file_that_cannot_be_imported_is_a_400_and_nothing_is_kept(owner, content, words):
    response = upload(owner, content)

    assert response.status_code == 400, response.content
    assert words in response.data["file"][0]
    assert not ContactImport.objects.exists() and not ScheduledJob.objects.exists()


def test_too_many_rows_or_bytes_are_refused(owner, monkeypatch):
    monkeypatch.setattr(imports, "MAX_ROWS", 2)
    too_many = upload(owner, "email\na@example.com\nb@example.com\nc@example.com\n")
    assert too_many.status_code == 400 and "At most 2 rows" in too_many.data["file"][0]

    monkeypatch.setattr(imports, "MAX_BYTES", 10)
    too_big = upload(owner, "email\nada@example.com\n")
    assert too_big.status_code == 413

    assert owner.client.post("/crm/contacts/import/", {}, format="multipart").status_code == 400
    assert not ContactImport.objects.exists()


def test_another_orgs_imports_are_a_404(owner, outsider):
    body = upload(owner, "email\nada@example.com\n").data
    assert outsider.client.get(f"/crm/imports/{body['id']}/").status_code == 404
    assert outsider.client.get("/crm/imports/").data["results"] == []
    assert [row["id"] for row in owner.client.get("/crm/imports/").data["results"]] == [body["id"]]


def test_the_command_imports_here_and_now_with_a_progress_bar(owner, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    file = tmp_path / "people.csv"
    file.write_text("email,tags\n" + "".join(f"p{n}@example.com,vip\n" for n in range(3)) + "bad,\n")
    out = io.StringIO()

    call_command("import_contacts", owner.org.slug, str(file), stdout=out)

    text = out.getvalue()
    assert "Importing 4 row(s) of people.csv into acme" in text
    assert "100% 4/4" in text and "Done: 3 created, 0 updated, 1 failed." in text
    assert "line 5: email:" in text
    assert Contact.objects.filter(org=owner.org, source="import").count() == 3
    with pytest.raises(CommandError, match="No org"):
        call_command("import_contacts", "nope", str(file))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_contacts", owner.org.slug, str(tmp_path / "missing.csv"))
