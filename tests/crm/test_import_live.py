"""A CSV import on a real worker: the first job published after the upload's commit, each chunk
queueing the next in its own commit, until every row is a contact."""

from __future__ import annotations

import io

import pytest

from core.models import EventRecord
from crm import imports
from crm.models import Contact, ContactImport
from tests import live

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_an_import_of_several_chunks_runs_to_the_end_on_a_worker(owner, worker):
    rows = imports.CHUNK_ROWS + 50
    file = io.BytesIO(
        ("email,first_name\n" + "".join(f"p{n}@example.com,P{n}\n" for n in range(rows))).encode()
    )
    file.name = "people.csv"

    response = owner.client.post("/crm/contacts/import/", {"file": file}, format="multipart")

    assert response.status_code == 202, response.content
    done = live.wait_for(
        lambda: ContactImport.objects.filter(pk=response.data["id"], status="done").first(),
        timeout=90,
        what=f"the import to finish; worker log:\n{worker.output()}",
    )
    assert (done.done, done.created, done.failed) == (rows, rows, 0)
    assert Contact.objects.filter(org=owner.org, source="import").count() == rows
    assert EventRecord.objects.filter(name="contact.created", data__source="import").count() == rows
