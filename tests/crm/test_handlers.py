"""crm/handlers.py, discovered as every app's handlers module is: contacts become contact.created."""

from core.models import EventRecord


def test_creating_a_contact_record_emits_contact_created_in_the_same_request(owner):
    response = owner.client.post(
        "/collections/contact/",
        {"data": {"email": "ada@example.com", "first_name": "Ada", "source": "form"}},
        format="json",
        HTTP_X_REQUEST_ID="crm-1",
    )
    assert response.status_code == 201, response.content

    created = EventRecord.objects.get(name="collection-create", record_pk=response.data["id"])
    domain = EventRecord.objects.get(name="contact.created")
    assert domain.orgid == owner.org.pk
    assert domain.data == {
        "contact_id": response.data["id"],
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "",
        "source": "form",
    }
    assert domain.causation_id == created.id
    assert domain.correlation_id == "crm-1"
    assert domain.actor == owner.user.pk


def test_a_contact_with_oddly_typed_fields_is_still_stored_and_announced(owner):
    response = owner.client.post(
        "/collections/contact/", {"data": {"email": 42, "first_name": ["x"]}}, format="json"
    )
    assert response.status_code == 201, response.content
    domain = EventRecord.objects.get(name="contact.created")
    assert domain.data["email"] is None
    assert domain.data["first_name"] == ""


def test_records_of_other_datatypes_do_not_emit_contact_created(owner):
    assert (
        owner.client.post("/collections/note/", {"data": {"email": "a@b.co"}}, format="json").status_code
        == 201
    )
    assert not EventRecord.objects.filter(name="contact.created").exists()
