from core.models import EventRecord


def test_it_creates_a_record_and_logs_its_event(owner):
    response = owner.client.post("/collections/lead/", {"data": {"name": "Ada"}}, format="json")
    assert response.status_code == 201, response.content
    event = EventRecord.objects.get(name="collection-create", record_pk=response.data["id"])
    assert event.orgid == owner.org.pk
    assert event.data["data"] == {"name": "Ada"}
