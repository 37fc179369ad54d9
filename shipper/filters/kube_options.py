"""The kubernetes filter's keys: Fluent Bit's names and defaults, and the keys it has that
shipper refuses (with what to do instead)."""

from __future__ import annotations

from dataclasses import dataclass

from shipper.config.schema import opt

SA = "/var/run/secrets/kubernetes.io/serviceaccount"

UNSUPPORTED = {
    "use_journal": "only container log files read by tail are supported",
    "use_kubelet": "metadata comes from the API server (Kube_URL)",
    "regex_parser": "only Fluent Bit's default tag layout is supported (set Kube_Tag_Prefix)",
    "merge_parser": "Merge_Log merges JSON only; use a parser filter after this one",
    "k8s-logging.parser": "use a parser filter instead",
    "kube_meta_preload_cache_dir": "metadata comes from the API server only",
    "dummy_meta": "test against a real or fake API server",
    "namespace_labels": "namespace metadata is not fetched",
    "namespace_annotations": "namespace metadata is not fetched",
    "namespace_metadata_only": "namespace metadata is not fetched",
    "cache_use_docker_id": "pods are cached by namespace and name",
    "kube_token_command": "use Kube_Token_File",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesOptions:
    kube_url: str = opt(
        "Kube_URL", "str", "https://kubernetes.default.svc:443", help="The API server's URL."
    )
    kube_ca_file: str | None = opt(
        "Kube_CA_File", "str", f"{SA}/ca.crt", help="CA certificate of the API server."
    )
    kube_ca_path: str | None = opt(
        "Kube_CA_Path", "str", None, help="Directory of CA certificates."
    )
    kube_token_file: str = opt(
        "Kube_Token_File", "str", f"{SA}/token", help="The service account's bearer token."
    )
    kube_token_ttl: float = opt(
        "Kube_Token_TTL", "time", 600.0, help="Read the token file again after this long."
    )
    kube_tag_prefix: str = opt(
        "Kube_Tag_Prefix",
        "str",
        "kube.var.log.containers.",
        help="Cut from the tag before the log file name is parsed.",
    )
    kube_pod_dir_namespace: str | None = opt(
        "Kube_Pod_Dir_Namespace",
        "str",
        None,
        help="shipper's: a tag that is not a container log file is Kube_Tag_Prefix + <pod>.<...>"
        " (one directory per pod, as k8s/daemonset), the pod in this namespace.",
    )
    kube_meta_cache_ttl: float = opt(
        "Kube_Meta_Cache_TTL", "time", 0.0, help="Refresh pods after this long (0: never)."
    )
    merge_log: bool = opt("Merge_Log", "bool", False, help="Merge a JSON `log` into the record.")
    merge_log_key: str | None = opt("Merge_Log_Key", "str", None, help="Merge under this key.")
    merge_log_trim: bool = opt("Merge_Log_Trim", "bool", True, help="Trim merged values.")
    keep_log: bool = opt("Keep_Log", "bool", True, help="Keep `log` once merged.")
    labels: bool = opt("Labels", "bool", True, help="Add the pod's labels.")
    annotations: bool = opt("Annotations", "bool", True, help="Add the pod's annotations.")
    owner_references: bool = opt(
        "Owner_References", "bool", False, help="Add the pod's ownerReferences."
    )
    k8s_logging_exclude: bool = opt(
        "K8S-Logging.Exclude", "bool", False, help="Honour fluentbit.io/exclude annotations."
    )
    use_tag_for_meta: bool = opt(
        "Use_Tag_For_Meta", "bool", False, help="Only what the tag says; no API calls."
    )
    buffer_size: int = opt("Buffer_Size", "size", 32 * 1024, help="Largest pod object (0: any).")
    tls_verify: bool = opt("tls.verify", "bool", True, help="Verify the API's certificate.")
    tls_verify_hostname: bool = opt(
        "tls.verify_hostname", "bool", False, help="Verify the certificate's host name."
    )
    tls_debug: int = opt("tls.debug", "int", -1, help="Accepted, no effect.")
    dns_retries: int = opt("DNS_Retries", "int", 6, help="Accepted, no effect.")
    dns_wait_time: int = opt("DNS_Wait_Time", "int", 30, help="Accepted, no effect.")
    kubelet_port: int = opt("Kubelet_Port", "int", 10250, help="Accepted (no Use_Kubelet).")
    kubelet_host: str = opt("Kubelet_Host", "str", "127.0.0.1", help="Accepted (no Use_Kubelet).")
    kube_meta_namespace_cache_ttl: float = opt(
        "Kube_Meta_Namespace_Cache_TTL", "time", 900.0, help="Accepted, no effect."
    )
    # keys refused when on (checked first, with advice): declared so `-h` lists them
    use_journal: bool = opt("Use_Journal", "bool", False, help="Not supported.")
    use_kubelet: bool = opt("Use_Kubelet", "bool", False, help="Not supported.")
    regex_parser: str | None = opt("Regex_Parser", "str", None, help="Not supported.")
    merge_parser: str | None = opt("Merge_Parser", "str", None, help="Not supported.")
    k8s_logging_parser: bool = opt("K8S-Logging.Parser", "bool", False, help="Not supported.")
    kube_meta_preload_cache_dir: str | None = opt(
        "Kube_meta_preload_cache_dir", "str", None, help="Not supported."
    )
    dummy_meta: bool = opt("Dummy_Meta", "bool", False, help="Not supported.")
    namespace_labels: bool = opt("Namespace_Labels", "bool", False, help="Not supported.")
    namespace_annotations: bool = opt("Namespace_Annotations", "bool", False, help="Not supported.")
    namespace_metadata_only: bool = opt(
        "Namespace_Metadata_Only", "bool", False, help="Not supported."
    )
    cache_use_docker_id: bool = opt("Cache_Use_Docker_Id", "bool", False, help="Not supported.")
    kube_token_command: str | None = opt("Kube_Token_Command", "str", None, help="Not supported.")
