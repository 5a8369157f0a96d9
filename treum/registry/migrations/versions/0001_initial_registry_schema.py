"""initial registry schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:03:06.646378
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('entity_type', sa.String(length=50), nullable=False),
    sa.Column('entity_id', sa.String(length=100), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('row_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('row_hash')
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_prefix', sa.String(length=12), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash'),
    sa.UniqueConstraint('name')
    )
    op.create_table('ml_features',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('feature_name', sa.String(length=200), nullable=False),
    sa.Column('feature_group', sa.String(length=100), nullable=False),
    sa.Column('feature_type', sa.String(length=20), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('data_type', sa.String(length=20), nullable=False),
    sa.Column('feature_importance_score', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('source_table', sa.String(length=100), nullable=True),
    sa.Column('source_column', sa.String(length=100), nullable=True),
    sa.Column('transformation_logic', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('min_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('max_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('mean_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('std_deviation', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('null_percentage', sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('feature_name', 'feature_group')
    )
    op.create_table('ml_models',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('model_type', sa.String(length=50), nullable=False),
    sa.Column('model_architecture', sa.String(length=100), nullable=True),
    sa.Column('model_file_path', sa.Text(), nullable=False),
    sa.Column('model_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('model_metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('model_size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=True),
    sa.Column('training_data_version', sa.String(length=50), nullable=True),
    sa.Column('training_start_time', sa.DateTime(), nullable=True),
    sa.Column('training_end_time', sa.DateTime(), nullable=True),
    sa.Column('training_duration_seconds', sa.Integer(), nullable=True),
    sa.Column('validation_accuracy', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('validation_loss', sa.Numeric(precision=12, scale=8, asdecimal=False), nullable=True),
    sa.Column('test_sharpe_ratio', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('test_max_drawdown', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('custom_metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('deployment_status', sa.String(length=20), nullable=False),
    sa.Column('deployment_date', sa.DateTime(), nullable=True),
    sa.Column('served_predictions', sa.BigInteger(), nullable=False),
    sa.Column('avg_inference_time_ms', sa.Numeric(precision=8, scale=2, asdecimal=False), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('approved_by', sa.Uuid(), nullable=True),
    sa.Column('approval_date', sa.DateTime(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('retirement_date', sa.DateTime(), nullable=True),
    sa.Column('retirement_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['approved_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_name', 'model_version')
    )
    with op.batch_alter_table('ml_models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ml_models_artifact_sha256'), ['artifact_sha256'], unique=False)

    op.create_table('feature_values',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('feature_id', sa.Uuid(), nullable=True),
    sa.Column('entity_type', sa.String(length=50), nullable=False),
    sa.Column('entity_id', sa.String(length=100), nullable=False),
    sa.Column('feature_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('feature_value_text', sa.String(length=500), nullable=True),
    sa.Column('feature_vector', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('timestamp', sa.DateTime(), nullable=False),
    sa.Column('confidence_score', sa.Numeric(precision=5, scale=4, asdecimal=False), nullable=True),
    sa.Column('data_quality_score', sa.Numeric(precision=5, scale=4, asdecimal=False), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['feature_id'], ['ml_features.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('feature_values', schema=None) as batch_op:
        batch_op.create_index('idx_feature_values_entity_time', ['entity_type', 'entity_id', 'timestamp'], unique=False)
        batch_op.create_index('idx_feature_values_feature_time', ['feature_id', 'timestamp'], unique=False)

    op.create_table('ml_predictions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('prediction_id', sa.String(length=100), nullable=False),
    sa.Column('input_features', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('feature_hash', sa.String(length=64), nullable=True),
    sa.Column('prediction_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('prediction_class', sa.String(length=50), nullable=True),
    sa.Column('prediction_probability', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('confidence_interval', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('ensemble_predictions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('ensemble_weights', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('entity_type', sa.String(length=50), nullable=False),
    sa.Column('entity_id', sa.String(length=100), nullable=False),
    sa.Column('prediction_horizon', sa.String(length=20), nullable=True),
    sa.Column('actual_value', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('prediction_error', sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True),
    sa.Column('is_correct', sa.Boolean(), nullable=True),
    sa.Column('inference_time_ms', sa.Integer(), nullable=True),
    sa.Column('model_version', sa.String(length=50), nullable=True),
    sa.Column('experiment_arm', sa.String(length=20), nullable=True),
    sa.Column('feature_importance', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('shap_values', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('explanation_text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prediction_id')
    )
    with op.batch_alter_table('ml_predictions', schema=None) as batch_op:
        batch_op.create_index('idx_predictions_entity', ['entity_type', 'entity_id', 'created_at'], unique=False)
        batch_op.create_index('idx_predictions_model_time', ['model_id', 'created_at'], unique=False)

    op.create_table('ml_training_jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('job_name', sa.String(length=200), nullable=False),
    sa.Column('job_type', sa.String(length=50), nullable=False),
    sa.Column('model_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('training_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dataset_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('compute_resources', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('estimated_duration_minutes', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('final_metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('best_model_path', sa.Text(), nullable=True),
    sa.Column('model_artifacts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('actual_cpu_hours', sa.Numeric(precision=10, scale=2, asdecimal=False), nullable=True),
    sa.Column('actual_memory_gb_hours', sa.Numeric(precision=10, scale=2, asdecimal=False), nullable=True),
    sa.Column('actual_gpu_hours', sa.Numeric(precision=10, scale=2, asdecimal=False), nullable=True),
    sa.Column('cost_usd', sa.Numeric(precision=10, scale=2, asdecimal=False), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_traceback', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('model_deployments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('route', sa.String(length=100), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('model_version', sa.String(length=50), nullable=True),
    sa.Column('previous_model_id', sa.Uuid(), nullable=True),
    sa.Column('previous_version', sa.String(length=50), nullable=True),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], ),
    sa.ForeignKeyConstraint(['previous_model_id'], ['ml_models.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_deployments', schema=None) as batch_op:
        batch_op.create_index('idx_deployments_name_time', ['model_name', 'created_at'], unique=False)

    op.create_table('model_experiments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('experiment_name', sa.String(length=200), nullable=False),
    sa.Column('experiment_description', sa.Text(), nullable=True),
    sa.Column('control_model_id', sa.Uuid(), nullable=True),
    sa.Column('treatment_model_id', sa.Uuid(), nullable=True),
    sa.Column('traffic_allocation', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('success_metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('start_date', sa.DateTime(), nullable=False),
    sa.Column('end_date', sa.DateTime(), nullable=False),
    sa.Column('control_performance', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('treatment_performance', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('statistical_significance', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('winner', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('analysis_notes', sa.Text(), nullable=True),
    sa.Column('decision', sa.String(length=20), nullable=True),
    sa.Column('decision_date', sa.DateTime(), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['control_model_id'], ['ml_models.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['treatment_model_id'], ['ml_models.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('model_performance_metrics',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('metric_date', sa.Date(), nullable=False),
    sa.Column('evaluation_period', sa.String(length=20), nullable=False),
    sa.Column('accuracy', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('precision', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('recall', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('f1_score', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('auc_roc', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('sharpe_ratio', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('max_drawdown', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('win_rate', sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=True),
    sa.Column('average_return', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('return_volatility', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('mean_absolute_error', sa.Numeric(precision=12, scale=8, asdecimal=False), nullable=True),
    sa.Column('root_mean_squared_error', sa.Numeric(precision=12, scale=8, asdecimal=False), nullable=True),
    sa.Column('mean_absolute_percentage_error', sa.Numeric(precision=8, scale=4, asdecimal=False), nullable=True),
    sa.Column('prediction_distribution', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error_distribution', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('feature_drift_score', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('prediction_drift_score', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('data_quality_score', sa.Numeric(precision=8, scale=6, asdecimal=False), nullable=True),
    sa.Column('total_predictions', sa.Integer(), nullable=True),
    sa.Column('successful_predictions', sa.Integer(), nullable=True),
    sa.Column('failed_predictions', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'metric_date', 'evaluation_period')
    )
    op.create_table('model_serving_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.String(length=100), nullable=False),
    sa.Column('input_size_bytes', sa.Integer(), nullable=True),
    sa.Column('output_size_bytes', sa.Integer(), nullable=True),
    sa.Column('feature_count', sa.Integer(), nullable=True),
    sa.Column('inference_time_ms', sa.Integer(), nullable=False),
    sa.Column('queue_time_ms', sa.Integer(), nullable=True),
    sa.Column('total_response_time_ms', sa.Integer(), nullable=True),
    sa.Column('cpu_usage_percent', sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=True),
    sa.Column('memory_usage_mb', sa.Integer(), nullable=True),
    sa.Column('gpu_usage_percent', sa.Numeric(precision=5, scale=2, asdecimal=False), nullable=True),
    sa.Column('error_occurred', sa.Boolean(), nullable=False),
    sa.Column('error_type', sa.String(length=50), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('api_endpoint', sa.String(length=200), nullable=True),
    sa.Column('client_ip', sa.String(length=45), nullable=True),
    sa.Column('timestamp', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_serving_logs', schema=None) as batch_op:
        batch_op.create_index('idx_serving_logs_model_time', ['model_id', 'timestamp'], unique=False)
        batch_op.create_index('idx_serving_logs_performance', ['inference_time_ms', 'timestamp'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('model_serving_logs', schema=None) as batch_op:
        batch_op.drop_index('idx_serving_logs_performance')
        batch_op.drop_index('idx_serving_logs_model_time')

    op.drop_table('model_serving_logs')
    op.drop_table('model_performance_metrics')
    op.drop_table('model_experiments')
    with op.batch_alter_table('model_deployments', schema=None) as batch_op:
        batch_op.drop_index('idx_deployments_name_time')

    op.drop_table('model_deployments')
    op.drop_table('ml_training_jobs')
    with op.batch_alter_table('ml_predictions', schema=None) as batch_op:
        batch_op.drop_index('idx_predictions_model_time')
        batch_op.drop_index('idx_predictions_entity')

    op.drop_table('ml_predictions')
    with op.batch_alter_table('feature_values', schema=None) as batch_op:
        batch_op.drop_index('idx_feature_values_feature_time')
        batch_op.drop_index('idx_feature_values_entity_time')

    op.drop_table('feature_values')
    with op.batch_alter_table('ml_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ml_models_artifact_sha256'))

    op.drop_table('ml_models')
    op.drop_table('ml_features')
    op.drop_table('api_keys')
    op.drop_table('users')
    op.drop_table('audit_log')
    
