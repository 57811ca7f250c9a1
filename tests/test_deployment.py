"""The self-hosting files: compose structure, Dockerfile hygiene, .env.example completeness."""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.smoke

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = {"web", "worker", "beat"}


def test_compose_has_every_service_with_a_real_healthcheck() -> None:
    services = COMPOSE["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    for name in APP_SERVICES | {"postgres", "redis"}:
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_app_services_share_one_image_and_wait_for_healthy_dependencies() -> None:
    services = COMPOSE["services"]
    images = {services[name]["image"] for name in APP_SERVICES | {"migrate"}}
    assert images == {"mailweb:latest"}
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["env_file"] == ".env"


def test_named_volumes_for_database_and_blobs() -> None:
    assert {"pgdata", "blobs"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in COMPOSE["services"]["postgres"]["volumes"]
    assert "blobs:/data" in COMPOSE["services"]["web"]["volumes"]


def test_no_secrets_in_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"(?i)\b([a-z_]*(?:password|secret|token_keys?))\s*:\s+(\S+)", text):
        value = match.group(2)
        assert value.startswith("${") or "${" in value, (
            f"literal secret in compose: {match.group(0)}"
        )


def test_dockerfile_is_multistage_nonroot_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "collectstatic" in text


def _settings_variables() -> set[str]:
    source = "\n".join(p.read_text() for p in [ROOT / "mailweb" / "settings.py"])
    return set(re.findall(r'env_(?:str|bool|int|list|secret)\(\s*"([A-Z_0-9]+)"', source))


def test_every_setting_is_in_env_example_and_readme() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    variables = _settings_variables() - {"MAILWEB_TESTING"}  # set by the test runner only
    assert len(variables) > 20
    for name in variables:
        assert re.search(rf"^{name}=", example, re.M), f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from README configuration table"


def test_readme_quick_start_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1][:3000]
    assert "script/server" in quick_start and "script/test" in quick_start
    assert Path(ROOT / ".ci" / "run").read_text().count("script/test") >= 1
