"""A run starts from an installed base model, by name, or continues from a reward model of its project
(issue 17): never a path. Existing runs keep the base model they recorded."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rewardtrain', '0002_job_lifecycle'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='base_reward_model',
            field=models.ForeignKey(blank=True, help_text='A reward model of the same project the run continues training from.', null=True, on_delete=django.db.models.deletion.RESTRICT, related_name='continued_by', to='rewardtrain.rewardmodel'),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='base_model',
            field=models.CharField(blank=True, help_text='The name of an installed base model (TRAINING_BASE_MODELS); empty when the run continues from `base_reward_model`.', max_length=500),
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('base_model', ''), ('base_reward_model__isnull', False)), models.Q(models.Q(('base_model', ''), _negated=True), ('base_reward_model__isnull', True)), _connector='OR'), name='trainingrun_one_base'),
        ),
    ]
