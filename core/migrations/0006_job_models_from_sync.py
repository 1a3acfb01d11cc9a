# The job machinery moved from the sync app to core.jobs: same tables (sync_*), new app label.

import core.ids
import django.db.models.deletion
from django.db import migrations, models


MOVED = ("joblog", "jobreceipt", "deadletter", "scheduledjob")


def move_content_types(apps, schema_editor, old="sync", new="core"):
    # Permissions granted on these models (and admin log entries) follow them to their new app.
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, old="core", new="sync")


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0005_invitations_and_default_org'),
        # The tables were created by sync's migrations, so those run first on an empty database.
        ('sync', '0005_inbox_indexes'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables exist already and keep their names: only the content types move.
            database_operations=[migrations.RunPython(move_content_types, move_content_types_back)],
            state_operations=[
                migrations.CreateModel(
                    name='JobLog',
                    fields=[
                        ('task_id', models.CharField(max_length=64, primary_key=True, serialize=False)),
                        ('task', models.CharField(max_length=200)),
                        ('deliveries', models.PositiveIntegerField(default=0)),
                        ('attempts', models.JSONField(default=list)),
                        ('updated_at', models.DateTimeField(auto_now=True, db_index=True)),
                    ],
                    options={
                        'db_table': 'sync_joblog',
                    },
                ),
                migrations.CreateModel(
                    name='JobReceipt',
                    fields=[
                        ('key', models.CharField(max_length=255, primary_key=True, serialize=False)),
                        ('task', models.CharField(max_length=200)),
                        ('completed_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                    ],
                    options={
                        'db_table': 'sync_jobreceipt',
                    },
                ),
                migrations.CreateModel(
                    name='DeadLetter',
                    fields=[
                        ('id', models.UUIDField(default=core.ids.uuid7, editable=False, primary_key=True, serialize=False)),
                        ('task_id', models.CharField(db_index=True, max_length=64)),
                        ('task', models.CharField(db_index=True, max_length=200)),
                        ('queue', models.CharField(db_index=True, max_length=40)),
                        ('args', models.JSONField(default=list)),
                        ('kwargs', models.JSONField(default=dict)),
                        ('correlation_id', models.CharField(blank=True, db_index=True, max_length=128)),
                        ('idempotency_key', models.CharField(blank=True, max_length=255)),
                        ('exception_class', models.CharField(max_length=200)),
                        ('exception_message', models.TextField(blank=True)),
                        ('traceback', models.TextField(blank=True)),
                        ('attempts', models.JSONField(default=list)),
                        ('first_failed_at', models.DateTimeField()),
                        ('last_failed_at', models.DateTimeField(db_index=True)),
                        ('status', models.CharField(choices=[('dead', 'Dead'), ('replayed', 'Replayed'), ('discarded', 'Discarded')], db_index=True, default='dead', max_length=10)),
                        ('replays', models.JSONField(default=list)),
                        ('status_changed_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('org', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='core.org')),
                    ],
                    options={
                        'db_table': 'sync_deadletter',
                        'ordering': ('-last_failed_at',),
                        'indexes': [models.Index(fields=['org', 'status', '-last_failed_at'], name='deadletter_org_status')],
                    },
                ),
                migrations.CreateModel(
                    name='ScheduledJob',
                    fields=[
                        ('id', models.UUIDField(default=core.ids.uuid7, editable=False, primary_key=True, serialize=False)),
                        ('run_at', models.DateTimeField()),
                        ('task', models.CharField(max_length=200)),
                        ('queue', models.CharField(max_length=40)),
                        ('args', models.JSONField(default=list)),
                        ('kwargs', models.JSONField(default=dict)),
                        ('options', models.JSONField(default=dict)),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('released', 'Released'), ('cancelled', 'Cancelled')], default='pending', max_length=10)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('released_at', models.DateTimeField(blank=True, null=True)),
                        ('org', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.org')),
                    ],
                    options={
                        'db_table': 'sync_scheduledjob',
                        'ordering': ('run_at',),
                        'indexes': [models.Index(condition=models.Q(('status', 'pending')), fields=['run_at'], name='scheduledjob_due')],
                    },
                ),
            ],
        ),
    ]
