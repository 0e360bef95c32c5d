"""How big the dataset is and how long each scenario measures: full run or --quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    users: int
    teams: int
    teams_per_user: int
    projects_per_user: int
    # generations are loaded in two stages, and each scenario is measured at both
    first_generations: int
    all_generations: int
    share_fraction: float  # part of the generations shared with a team
    authorize_samples_per_path: int
    authorize_iterations: int
    list_users: int
    list_iterations: int
    http_seconds: int  # load on each side of a paired HTTP figure, in 3 or more slices
    warmup_seconds: int  # a server's warm-up load before its first figure
    concurrency_sweep: tuple[int, ...]  # wrk connection counts of the throughput sweep
    # the cache scenarios
    hit_rate_users: int  # users of the mixed workload
    hit_rate_per_user: int  # generations each of them looks at
    hit_rate_reads: int  # authorize calls; one permission change per 99 of them
    casbin_policies: int  # team links casbin holds, about 7 per team
    casbin_decisions: int  # decisions timed through casbin (each costs milliseconds)
    propagation_trials: int  # revocations through one instance, timed on the other
    # a count through RLS with many public projects
    public_projects: int  # how many projects are public for it
    count_users: int  # users whose count is timed
    count_iterations: int
    # the FAL pipeline on the fake FAL, on a database of its own
    pipeline_generations: int  # submits, webhooks, and generations drained per worker count
    live_event_trials: int  # webhooks timed until their SSE event
    token_iterations: int  # distinct tokens verified per algorithm
    bcrypt_samples: int  # bcrypt checks timed in process, the login's own floor

    @property
    def stages(self) -> tuple[int, int]:
        return (self.first_generations, self.all_generations)


FULL = Scale(
    name="full",
    users=10_000,
    teams=1_000,
    teams_per_user=3,
    projects_per_user=3,
    first_generations=10_000,
    all_generations=1_000_000,
    share_fraction=0.02,
    authorize_samples_per_path=300,
    authorize_iterations=6_000,
    list_users=200,
    list_iterations=1_000,
    http_seconds=15,
    warmup_seconds=3,
    concurrency_sweep=(1, 4, 16, 32, 64),
    hit_rate_users=1_000,
    hit_rate_per_user=10,
    hit_rate_reads=30_000,
    casbin_policies=7_000,
    casbin_decisions=200,
    propagation_trials=100,
    public_projects=20_000,
    count_users=5,
    count_iterations=20,
    pipeline_generations=500,
    live_event_trials=200,
    token_iterations=10_000,
    bcrypt_samples=30,
)

QUICK = Scale(
    name="quick",
    users=1_000,
    teams=100,
    teams_per_user=3,
    projects_per_user=3,
    first_generations=2_000,
    all_generations=50_000,
    share_fraction=0.02,
    authorize_samples_per_path=50,
    authorize_iterations=1_000,
    list_users=50,
    list_iterations=200,
    http_seconds=3,
    warmup_seconds=1,
    concurrency_sweep=(1, 16, 64),
    hit_rate_users=300,
    hit_rate_per_user=10,
    hit_rate_reads=6_000,
    casbin_policies=700,
    casbin_decisions=60,
    propagation_trials=50,
    public_projects=2_000,
    count_users=5,
    count_iterations=20,
    pipeline_generations=50,
    live_event_trials=30,
    token_iterations=1_000,
    bcrypt_samples=10,
)
