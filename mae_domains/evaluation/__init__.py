"""Downstream evaluation: features, protocols (kNN, linear probe, fine-tuning, multi-label mAP, anomaly
scoring by reconstruction error), metrics, result records and runner.

Quick use on plain tensors::

    from mae_domains.evaluation import knn_accuracy, linear_probe_accuracy, extract_features
    train = extract_features(encoder, train_loader)       # FeatureSet(features, labels, sample_ids)
    test = extract_features(encoder, test_loader)
    knn_accuracy(train.features, train.labels, test.features, test.labels, k=20, temperature=0.07)
    linear_probe_accuracy(train.features, train.labels, test.features, test.labels)

Protocols are registered objects (:mod:`mae_domains.protocols`): ``run_protocol("multilabel_map", train,
test, encoder=...)`` dispatches by name, and ``register_protocol`` adds one. Benchmarks:
``run_benchmark_file("benchmarks/downstream.yaml")``; one checkpoint: ``evaluate_checkpoint``.
"""

from mae_domains.evaluation.anomaly import AnomalyProtocol, anomaly_scores
from mae_domains.evaluation.features import (
    EncoderEmbedding, FeatureCache, FeatureSet, RawPixelEmbedding, cache_key, cached_features, extract_features,
)
from mae_domains.evaluation.finetune import (
    FinetuneConfig, FinetuneProtocol, FinetuneResult, GridClassifier, finetune, image_grid_batch, set_drop_path,
)
from mae_domains.evaluation.knn import KnnProtocol, knn_accuracy, knn_predict, knn_scores
from mae_domains.evaluation.linear_probe import (
    LARS, LinearProbeConfig, LinearProbeHead, LinearProbeProtocol, LinearProbeResult, linear_probe,
    linear_probe_accuracy, train_linear_probe,
)
from mae_domains.evaluation.metrics import (
    MetricReport, bootstrap_ci, classification_report, macro_f1, mean_average_precision, mean_roc_auc,
    per_class_average_precision, per_class_roc_auc, score_result, top_k_accuracy,
)
from mae_domains.evaluation.results_card import (
    ModelCardInfo, model_card_from_checkpoint, render_model_card, write_model_card,
)
from mae_domains.evaluation.multilabel import MultilabelMapProtocol
from mae_domains.evaluation.records import (
    ResultRecord, read_jsonl, records_from_result, regenerate_reports, render_csv, render_markdown, render_plots,
    write_jsonl, write_reports,
)
from mae_domains.evaluation.runner import (
    evaluate_checkpoint, protocol_defaults, run_benchmark, run_benchmark_file, run_protocol,
)
from mae_domains.protocols import (
    EvaluationProtocol, ProtocolContext, ProtocolResult, get_protocol, protocol_names, register_protocol,
)

__all__ = [
    "AnomalyProtocol", "anomaly_scores", "EncoderEmbedding", "FeatureCache", "FeatureSet", "RawPixelEmbedding", "cache_key", "cached_features",
    "extract_features", "FinetuneConfig", "FinetuneProtocol", "FinetuneResult", "GridClassifier", "finetune",
    "image_grid_batch", "set_drop_path", "KnnProtocol", "knn_accuracy", "knn_predict", "knn_scores", "LARS",
    "LinearProbeConfig", "LinearProbeHead", "LinearProbeProtocol", "LinearProbeResult", "linear_probe",
    "linear_probe_accuracy", "train_linear_probe", "MetricReport", "bootstrap_ci", "classification_report",
    "macro_f1", "mean_average_precision", "mean_roc_auc", "per_class_average_precision", "per_class_roc_auc",
    "score_result", "top_k_accuracy", "ModelCardInfo", "model_card_from_checkpoint", "render_model_card",
    "write_model_card", "MultilabelMapProtocol", "ResultRecord", "read_jsonl", "records_from_result",
    "regenerate_reports", "render_csv", "render_markdown", "render_plots", "write_jsonl", "write_reports",
    "evaluate_checkpoint", "protocol_defaults", "run_benchmark", "run_benchmark_file", "run_protocol",
    "EvaluationProtocol", "ProtocolContext", "ProtocolResult", "get_protocol", "protocol_names", "register_protocol",
]
