"""What policies and topologies mean: the declared intent (``intent``), the subject of a question
(``subject``), the matrix and one verdict (``explain``), ``verify``, ``diff``, several topologies of a
namespace (``namespace``), checks against real pods (``findings``), the operator's status diagnosis
(``diagnosis``) and diagrams (``graph``). Pure: no Kubernetes client, no operator framework."""
