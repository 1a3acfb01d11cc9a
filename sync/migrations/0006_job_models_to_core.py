# The job models now belong to core (core.0006 took them over, tables and all): drop them from
# sync's state only, leaving their tables to core.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0005_inbox_indexes'),
        ('core', '0006_job_models_from_sync'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name='deadletter', name='org'),
                migrations.RemoveField(model_name='scheduledjob', name='org'),
                migrations.DeleteModel(name='JobLog'),
                migrations.DeleteModel(name='JobReceipt'),
                migrations.DeleteModel(name='DeadLetter'),
                migrations.DeleteModel(name='ScheduledJob'),
            ],
        ),
    ]
