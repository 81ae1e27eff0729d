"""supply_chain_frame, provenance, sbom_frame and export_sbom on the seeded demo.

registry_nb.demo_supply seeds, against the real distribution registry, images with each
kind of attachment (cosign .sig tags, cosign v3 sigstore bundle referrers, notation JWS
referrers, an SBOM and DSSE-signed provenance referrers, BuildKit-style in-index
attestations, an orphan fallback tag) and a tampered copy of each signature. On
distribution the referrers go through the fallback tag; the same seed behind
tests/referrers_proxy.py (our loopback proxy answering the referrers API the way the
distribution spec says) is found through the API.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from referrers_proxy import ReferrersProxy

from registry_nb import ContainerRegistry
from registry_nb.audits.supply_rules import SUPPLY_RULES, supply_rules
from registry_nb.demo_supply import seed_supply_chain_demo
from registry_nb.errors import NotFoundError


@pytest.fixture(scope="module")
def seeded(services_info):
    import secrets

    host = services_info["open"]["host"]
    repo = f"test/supply-frame-{secrets.token_hex(3)}"
    with ContainerRegistry(host) as reg:
        info = seed_supply_chain_demo(reg, repo)
        yield reg, info


def _true(value) -> bool:
    return bool(value) if value is not pd.NA and not pd.isna(value) else False


def _frame(reg, info, **trust):
    return reg.supply_chain_frame(info["repository"], **trust).set_index("tag")


def test_every_attachment_is_found_and_exactly_the_untampered_verify(seeded):
    reg, info = seeded
    started = time.monotonic()
    frame = _frame(reg, info, keys=info["public_key"], trust_anchors=info["trust_anchors"])
    rate = len(frame) / (time.monotonic() - started)
    print(f"supply_chain_frame: {len(frame)} rows, {rate:.1f} images/s")
    images = frame[~frame["orphan"].fillna(False).astype(bool)]
    for tag, expected in info["verified"].items():
        assert _true(images.loc[tag, "signature_verified"]) is expected, (
            tag, images.loc[tag, "signature_reason"])
    for tag in ("cosign-tampered", "bundle-tampered", "notation-tampered"):
        assert images.loc[tag, "signed"]
        assert "signature-not-verified" in images.loc[tag, "findings"]
        assert images.loc[tag, "signature_reason"]
    assert images.loc["cosign", "found_by"] == ["cosign-tag", "fallback-tag"]
    assert images.loc["bundle", "found_by"] == ["fallback-tag"]
    assert images.loc["buildkit", "found_by"] == ["cosign-tag", "in-index"]
    assert images.loc["unsigned", "found_by"] == []
    assert "unsigned" in images.loc["unsigned", "findings"]


def test_sboms_provenance_and_rules(seeded):
    reg, info = seeded
    frame = _frame(reg, info, keys=info["public_key"])
    cosign = frame.loc["cosign"]
    assert (cosign["sbom_format"], cosign["sbom_packages"]) == ("spdx", 2)
    assert (cosign["provenance_version"], cosign["provenance_mode"]) == ("1", "min")
    assert cosign["source_revision"] == "1" * 40
    kit = frame.loc["buildkit"]
    assert kit["platform"] == "linux/amd64" and kit["provenance_mode"] == "max"
    assert kit["secret_build_args"] == ["API_TOKEN"]
    assert "not-a-real-token" not in frame.to_string()  # names only, never values
    assert {"index-signed-platforms-not", "secret-build-args",
            "base-image-drift"} <= set(kit["findings"])
    orphan = frame[frame["orphan"].fillna(False).astype(bool)]
    assert len(orphan) == 1 and orphan.iloc[0]["findings"] == ["orphan-attachment"]
    assert "no-sbom" in frame.loc["bundle", "findings"]
    assert set(supply_rules()["id"]) == {r.id for r in SUPPLY_RULES}


def test_without_trust_material_nothing_verifies(seeded):
    reg, info = seeded
    frame = _frame(reg, info)
    signed = frame[frame["signed"].fillna(False).astype(bool)]
    assert len(signed) >= 7
    assert not signed["signature_verified"].fillna(False).astype(bool).any()


def test_provenance_sbom_frame_and_export(seeded):
    reg, info = seeded
    repo = info["repository"]
    provenance = reg.provenance(repo, "cosign")
    assert provenance.builder_id == "https://example.invalid/ci/run/1"
    assert provenance.source_repository == "https://example.invalid/demo/app.git"
    sbom = reg.sbom_frame(repo, "cosign")
    assert sorted(sbom["name"]) == ["busybox", "musl"]
    assert sbom.attrs["sbom_format"] == "spdx"
    assert reg.provenance(f"{repo}:buildkit").mode == "max"  # in-index, through the index
    with pytest.raises(NotFoundError, match="no readable SBOM"):
        reg.sbom_frame(repo, "unsigned")
    document = json.loads(reg.export_sbom(repo, "unsigned", format="cyclonedx"))
    assert document["bomFormat"] == "CycloneDX"
    spdx = json.loads(reg.export_sbom(repo, "unsigned", format="spdx"))
    assert spdx["spdxVersion"] == "SPDX-2.3"


def test_listings_hide_digest_tags_and_say_how_many(seeded):
    reg, info = seeded
    repo = info["repository"]
    all_tags = reg.client.tags(repo)
    digest_tags = [t for t in all_tags if t.startswith("sha256-")]
    assert digest_tags
    rows = reg.list_registry_images(repo, limit=None)
    assert not [r for r in rows if r["tag"].startswith("sha256-")]
    assert rows.hidden_digest_tags == len(digest_tags)
    frame = reg.registry_images_frame(repo, limit=None)
    assert frame.attrs["hidden_digest_tags"] == len(digest_tags)
    assert len(frame) == len(all_tags) - len(digest_tags)
    assert reg.audit(repo, limit=None).attrs["hidden_digest_tags"] == len(digest_tags)


def test_the_referrers_api_is_used_where_the_registry_has_it(services_info):
    import secrets

    repo = f"test/supply-api-{secrets.token_hex(3)}"
    with ReferrersProxy(f"http://{services_info['open']['host']}") as proxy, \
            ContainerRegistry(proxy.host) as reg:
        info = seed_supply_chain_demo(reg, repo)
        frame = _frame(reg, info, keys=info["public_key"], trust_anchors=info["trust_anchors"])
        assert frame.loc["cosign", "found_by"] == ["cosign-tag", "referrers-api"]
        assert frame.loc["bundle", "found_by"] == ["referrers-api"]
        assert _true(frame.loc["notation", "signature_verified"])
        assert not _true(frame.loc["notation-tampered", "signature_verified"])
        tags = reg.client.tags(repo)
        # the API holds every referrer: the only fallback tag is the seeded orphan's
        assert len([t for t in tags if t.startswith("sha256-") and "." not in t]) == 1


def test_signed_images_copied_to_another_registry_still_verify(seeded, basic_registry):
    from registry_nb.remote.credentials import RegistryCredentials

    reg, info = seeded
    repo = info["repository"]
    creds = RegistryCredentials(basic_registry.username, basic_registry.password)
    with ContainerRegistry(basic_registry.host, creds) as dest:
        for tag in ("cosign", "buildkit", "notation-tampered"):
            result = dest.copy_image(f"{reg.registry_host}/{repo}:{tag}",
                                     f"{basic_registry.host}/{repo}:{tag}")
            assert result["referrers"] >= 1
        frame = dest.supply_chain_frame(repo, keys=info["public_key"],
                                        trust_anchors=info["trust_anchors"]).set_index("tag")
        assert _true(frame.loc["cosign", "signature_verified"])
        assert frame.loc["cosign", "sbom_packages"] == 2
        assert frame.loc["cosign", "found_by"] == ["cosign-tag", "fallback-tag"]
        assert _true(frame.loc["buildkit", "signature_verified"])
        assert frame.loc["buildkit", "provenance_mode"] == "max"
        assert not _true(frame.loc["notation-tampered", "signature_verified"])


def test_shared_fixtures_attached_read_back(open_registry, unique_repo, tmp_path):
    """The trivy CycloneDX 1.5 SBOM and BuildKit's SLSA v0.2 max-mode provenance from
    ../shared, attached as referrers with push_artifact, read back as the fixtures say."""
    from helpers import seed_image
    from supply_fixtures import supply_path

    seed_image(open_registry, unique_repo, "1")
    sbom = supply_path("trivy/centos-7-cyclonedx.json")
    provenance = supply_path("buildkit-buildx/buildkit.slsa-provenance-v0.2.mode-max.intoto.json")
    with ContainerRegistry(open_registry.host) as reg:
        reg.push_artifact(sbom, unique_repo, artifact_type="application/vnd.cyclonedx+json",
                          subject="1")
        reg.push_artifact(provenance, unique_repo, artifact_type="application/vnd.in-toto+json",
                          subject="1")
        frame = reg.sbom_frame(unique_repo, "1")
        assert frame.attrs["sbom_format"] == "cyclonedx"
        assert len(frame) == 3 and frame["purl"].str.startswith("pkg:rpm/centos/").sum() == 2
        parsed = reg.provenance(unique_repo, "1")
        assert parsed.slsa_version == "0.2" and parsed.mode == "max"
        kinds = set(reg.referrers(unique_repo, "1")["kind"])
        assert kinds == {"sbom", "other"}  # an in-toto layer: only its content says what
