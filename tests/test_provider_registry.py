"""One registry entry per provider (core/providers.py) is all the configuration, the local
services, `billbridge server` and the exporters need to know about it."""

from __future__ import annotations

import subprocess
import sys

from billbridge.activities.providers import OAUTH_APPS, PROVIDERS
from billbridge.core.config import Settings
from billbridge.core.marketplaces import MARKETPLACE_ENTRIES
from billbridge.core.models import EXPORTABLE_PROVIDERS
from billbridge.core.providers import PROVIDER_ENTRIES, load
from billbridge.emulators.serving import EmulatorService
from billbridge.starter.cli import build_parser


def test_every_entry_names_importable_parts_that_agree_with_it() -> None:
    assert len({entry.name for entry in PROVIDER_ENTRIES}) == len(PROVIDER_ENTRIES)
    for entry in PROVIDER_ENTRIES:
        assert entry.name in EXPORTABLE_PROVIDERS
        # The factory builds the provider module that calls itself by the entry's name.
        assert load(entry.factory).__self__.name == entry.name
        assert issubclass(load(entry.emulator), EmulatorService)
        if entry.oauth_app:
            assert callable(load(entry.oauth_app))
    assert set(PROVIDERS) == {entry.name for entry in PROVIDER_ENTRIES}
    assert set(OAUTH_APPS) == {e.name for e in PROVIDER_ENTRIES if e.oauth_app}


def test_settings_read_each_entrys_variable_and_fall_back_to_its_real_endpoint() -> None:
    variables = {entry.api_base_env: f"http://{entry.slug}.test" for entry in PROVIDER_ENTRIES}
    configured = Settings.from_env(variables)
    cluster = Settings.from_env({"TEMPORAL_ADDRESS": "temporal.internal:7233"})
    for entry in PROVIDER_ENTRIES:
        assert configured.api_base(entry.name) == f"http://{entry.slug}.test"
        assert cluster.api_base(entry.name) == entry.real_url
        assert Settings.from_env({}).endpoints()[entry.name] == entry.emulator_url
    # `billbridge server` takes each emulator's port as --<slug>-port.
    args = build_parser().parse_args(["server", *(f"--{e.slug}-port=0" for e in PROVIDER_ENTRIES)])
    assert all(getattr(args, f"{e.slug}_port") == 0 for e in PROVIDER_ENTRIES)


def test_settings_pass_to_another_process_through_their_variables() -> None:
    """A worker or CLI process started with `settings.to_env()` builds the same settings."""
    variables = {entry.api_base_env: f"http://{entry.slug}.test" for entry in PROVIDER_ENTRIES}
    variables.update(
        {entry.endpoint_env: f"http://{entry.name}.market.test" for entry in MARKETPLACE_ENTRIES}
    )
    settings = Settings.from_env(
        {
            **variables,
            "TEMPORAL_ADDRESS": "temporal.internal:7233",
            "DATABASE_URL": "postgresql://billbridge@db/billbridge",
            "BILLBRIDGE_TASK_QUEUE": "exports",
            "BILLBRIDGE_METERING_GATHER_SECONDS": "0.5",
            "STRIPE_API_KEY": "sk_test_round_trip",
        }
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_a_worker_process_never_imports_emulator_code() -> None:
    code = (
        "import sys\n"
        "import billbridge.starter.cli, billbridge.workers.export_worker\n"
        "import billbridge.activities.providers, billbridge.starter.local_services\n"
        "loaded = [m for m in sys.modules if m.startswith('billbridge.emulators')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
