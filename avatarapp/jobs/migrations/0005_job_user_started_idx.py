from django.db import migrations, models


class Migration(migrations.Migration):
    """The fair queue asks when each waiting user's last job started (jobs.models.fair_queue_sql)."""

    dependencies = [
        ("jobs", "0004_output_flagged_moderation"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["user", "started_at"], name="jobs_job_user_started_idx"),
        ),
    ]
