"""Calls EVERY public method of the official SDK's client with plausible arguments against the
emulator's current flavour and prints one JSON line: for each method, "ok" or the error.

How the count is made: the methods are enumerated from the client itself (every public
bound method of every resource attribute, nested ones such as client.fleet.devices
included), so a method this script forgot to call is reported as "not called", never
skipped. A call counts as a success when it returns without raising (its result is parsed
by the SDK's own pydantic models). Usage: every_call.py SCRATCH_DIR (see common.py).
"""

import inspect
import json
import os
import sys
import uuid

import httpx

from common import client

scratch = sys.argv[1]
c = client()
results = {}


def public_methods():
    names = []

    def walk(prefix, obj):
        for name, member in inspect.getmembers(obj):
            if name.startswith("_"):
                continue
            if inspect.ismethod(member):
                names.append(f"{prefix}.{name}")
            elif hasattr(member, "_transport") and not isinstance(member, type):
                walk(f"{prefix}.{name}", member)

    for name, resource in vars(c).items():
        if not name.startswith("_"):
            walk(name, resource)
    return sorted(names)


def call(method_name, fn, *args, **kwargs):
    try:
        value = fn(*args, **kwargs)
        if inspect.isgenerator(value):
            value = list(value)
        results[method_name] = "ok"
        return value
    except Exception as e:  # reported, counted as a failure
        results[method_name] = f"{type(e).__name__}: {e}"[:300]
        return None


first = items = project = folder = None


def section(fn):
    """Runs a group of calls at once; a failure that stops the group is reported, and the
    calls it did not reach stay "not called" (so they count as failures, never as skipped)."""
    try:
        fn()
    except Exception as e:  # reported below, the other groups still run
        results[f"<{fn.__name__} stopped>"] = f"{type(e).__name__}: {e}"[:300]
    return fn


# ---- datasets, items, uploads -----------------------------------------------------------
@section
def section_0():
    global first, items, project, folder
    ds = c.datasets
    page = call("datasets.list", ds.list, limit=10)
    first = page.items[0]
    call("datasets.get", ds.get, first.uid)
    call("datasets.get_by_slug", ds.get_by_slug, first.owner_name, first.slug)
    items = call("datasets.list_items", ds.list_items, first.owner_name, first.slug, limit=5)
    call("datasets.get_item", ds.get_item, first.owner_name, first.slug, items.items[0].uid)
    seqs = call("datasets.list_sequences", ds.list_sequences, first.owner_name, first.slug)
    seq = seqs.items[0].uid if seqs else "none"
    call("datasets.get_sequence", ds.get_sequence, first.owner_name, first.slug, seq)
    call("datasets.get_frame", ds.get_frame, first.owner_name, first.slug, seq, 0)
    call("datasets.get_calibration", ds.get_calibration, first.owner_name, first.slug, seq)
    call("datasets.get_health", ds.get_health, first.owner_name, first.slug)
    created = call("datasets.create", ds.create, name="Made by SDK", slug="made-by-sdk", data_type="image")
    if created:
        call("datasets.wait", ds.wait, created.uid, interval=0.1, timeout=30)
    call("datasets.manual_upload_quota", ds.manual_upload_quota)
    call("datasets.manual_upload_allowed_mimes", ds.manual_upload_allowed_mimes)
    call("datasets.resolve_storage_root", ds.resolve_storage_root)
    root = ds.resolve_storage_root()
    call("datasets.assert_storage_root_unchanged", ds.assert_storage_root_unchanged, root)
    batch = call("datasets.prepare_manual_upload_batch", ds.prepare_manual_upload_batch, "Every call", resume=False)
    call(
        "datasets.create_manual_upload_url",
        ds.create_manual_upload_url,
        dataset_name="Presign only",
        file_path_in_dataset="x/y.bin",
        content_length=10,
    )
    folder = os.path.join(scratch, "folder")
    os.makedirs(folder, exist_ok=True)
    for n in range(3):
        with open(os.path.join(folder, f"file{n}.txt"), "w") as f:
            f.write(f"file {n}\n" * (n + 1))
    files = [(os.path.join(folder, f"file{n}.txt"), f"file{n}.txt") for n in range(3)]
    call("datasets.upload_files", ds.upload_files, dataset_name="Every call", files=files, workers=2,
         dataset_upload_uid=batch)
    call("datasets.create_from_manual_upload", ds.create_from_manual_upload, name="Every call",
         slug="every-call", data_type="image", dataset_upload_uid=batch)
    call("datasets.create_from_local", ds.create_from_local, source=folder, name="Every call 2",
         slug="every-call-2", data_type="image", workers=2)
    call("datasets.transfer", ds.transfer, first.owner_name, first.slug, organization_uid=str(uuid.uuid4()))


# ---- projects, tasks, exports -------------------------------------------------------------
@section
def section_1():
    global first, items, project, folder
    projects = call("projects.list", c.projects.list)
    project = projects.items[0].uid
    call("projects.get", c.projects.get, project)
    tasks = call("tasks.list", c.tasks.list, project=project, status=None)
    call("tasks.get", c.tasks.get, tasks.items[0].uid)
    export = call("exports.create", c.exports.create, project=project)
    call("exports.get", c.exports.get, export.uid)
    call("exports.wait", c.exports.wait, export.uid, interval=0.5, timeout=30)
    call("exports.list", c.exports.list)


# ---- agents -----------------------------------------------------------------------------------
@section
def section_2():
    global first, items, project, folder
    agent = call("agents.create", c.agents.create, name="Reviewer bot", events=["task.completed"])
    call("agents.list", c.agents.list)
    call("agents.get", c.agents.get, agent.uid)
    call("agents.update", c.agents.update, agent.uid, description="Reviews tasks")
    call("agents.list_executions", c.agents.list_executions, agent.uid)
    call("agents.test", c.agents.test, agent.uid)
    call("agents.delete", c.agents.delete, agent.uid)


# ---- annotation issues, annotations --------------------------------------------------------------
@section
def section_3():
    global first, items, project, folder
    ai = c.annotation_issues
    issue = call("annotation_issues.create", ai.create, "seq-1", tool_uid="tool-1", problem_uid="problem-1",
                 description="Box too loose")
    call("annotation_issues.list_by_sequence", ai.list_by_sequence, "seq-1")
    call("annotation_issues.update", ai.update, "seq-1", issue.uid, status="closed")
    call("annotation_issues.delete", ai.delete, "seq-1", issue.uid)
    call("annotation_issues.list_by_dataset", ai.list_by_dataset, first.owner_name, first.slug)
    call("annotation_issues.get_metrics", ai.get_metrics, first.owner_name, first.slug)
    call("annotation_issues.list_tools", ai.list_tools, dataset_type="image")
    call("annotations.bulk_edit", c.annotations.bulk_edit, first.owner_name, first.slug,
         [{"action": "delete", "object_uuid": str(uuid.uuid4()), "object_type": "cuboid",
           "dataset_item_uid": items.items[0].uid}])


# ---- auto-label jobs, consensus, quality targets ------------------------------------------------------
@section
def section_4():
    global first, items, project, folder
    job = call("auto_label_jobs.create", c.auto_label_jobs.create, project, model_type="default")
    call("auto_label_jobs.list", c.auto_label_jobs.list, project=project)
    call("auto_label_jobs.get", c.auto_label_jobs.get, job.uid)
    call("auto_label_jobs.cancel", c.auto_label_jobs.cancel, job.uid)
    call("consensus.get_summary", c.consensus.get_summary, project)
    call("consensus.list_scores", c.consensus.list_scores, project)
    call("consensus.compute", c.consensus.compute, project)
    call("consensus.get_config", c.consensus.get_config, project)
    call("consensus.update_config", c.consensus.update_config, project, iou_threshold=0.6)
    qt = c.quality_targets
    target = call("quality_targets.create", qt.create, project, name="Accuracy", metric="accuracy", threshold=0.9)
    call("quality_targets.list", qt.list, project)
    call("quality_targets.get", qt.get, project, target.uid)
    call("quality_targets.update", qt.update, project, target.uid, threshold=0.95)
    call("quality_targets.evaluate", qt.evaluate, project)
    call("quality_targets.delete", qt.delete, project, target.uid)


# ---- organizations ------------------------------------------------------------------------------
@section
def section_5():
    global first, items, project, folder
    org = c.organizations
    created_org = call("organizations.create", org.create, name="Robots Inc")
    slug = created_org.slug
    call("organizations.list", org.list)
    call("organizations.get", org.get, slug)
    call("organizations.update", org.update, slug, description="We build robots")
    call("organizations.industry_choices", org.industry_choices)
    call("organizations.slug_for_uid", org.slug_for_uid, created_org.uid)
    members = call("organizations.list_members", org.list_members, slug)
    member = members.items[0].user_uid
    call("organizations.update_member_role", org.update_member_role, slug, member, role="admin")
    invitation = call("organizations.create_invitation", org.create_invitation, slug, email="new@example.com")
    call("organizations.list_invitations", org.list_invitations, slug)
    call("organizations.resend_invitation", org.resend_invitation, slug, invitation.uid)
    call("organizations.cancel_invitation", org.cancel_invitation, slug, invitation.uid)
    team = call("organizations.create_team", org.create_team, slug, name="Labelers")
    call("organizations.list_teams", org.list_teams, slug)
    call("organizations.get_team", org.get_team, slug, team.slug)
    call("organizations.update_team", org.update_team, slug, team.slug, color="green")
    call("organizations.add_team_member", org.add_team_member, slug, team.slug, user_uid=member)
    call("organizations.list_team_members", org.list_team_members, slug, team.slug)
    call("organizations.update_team_member_role", org.update_team_member_role, slug, team.slug, member, role="lead")
    call("organizations.remove_team_member", org.remove_team_member, slug, team.slug, member)
    call("organizations.delete_team", org.delete_team, slug, team.slug)
    call("organizations.transfer_ownership", org.transfer_ownership, slug, new_owner_uid=member)
    call("organizations.remove_member", org.remove_member, slug, member)
    call("organizations.leave", org.leave, slug)
    call("organizations.delete", org.delete, slug)


# ---- slices, storage configs, webhooks, inference providers ---------------------------------------------
@section
def section_6():
    global first, items, project, folder
    slices = call("slices.list", c.slices.list, "demo")
    call("slices.create", c.slices.create, name="Night scenes", visibility="private", sub_slices=[])
    a_slice = slices.items[0].slug
    call("slices.get", c.slices.get, "demo", a_slice)
    slice_items = call("slices.list_items", c.slices.list_items, "demo", a_slice)
    call("slices.get_item", c.slices.get_item, "demo", a_slice, slice_items.items[0].uid)
    sc = c.storage_configs
    config = call("storage_configs.create", sc.create, name="Bucket", provider="aws_s3", s3_bucket_name="my-bucket",
                  s3_secret_access_key="not-a-real-secret")
    results["storage_configs.create"] = (
        "ok" if config and "not-a-real-secret" not in json.dumps(config.model_dump(mode="json")) else "secret echoed"
    )
    call("storage_configs.list", sc.list)
    call("storage_configs.get", sc.get, config.uid)
    call("storage_configs.setup_info", sc.setup_info)
    call("storage_configs.test", sc.test, config.uid)
    call("storage_configs.delete", sc.delete, config.uid)
    hook = call("webhooks.create", c.webhooks.create, target_url="https://example.com/hook", events=["export.completed"])
    call("webhooks.list", c.webhooks.list)
    call("webhooks.get", c.webhooks.get, hook.uid)
    call("webhooks.update", c.webhooks.update, hook.uid, is_active=False)
    call("webhooks.test", c.webhooks.test, hook.uid)
    call("webhooks.delete", c.webhooks.delete, hook.uid)
    deliveries = call("webhook_deliveries.list", c.webhook_deliveries.list)
    call("webhook_deliveries.get", c.webhook_deliveries.get, deliveries.items[0].uid)
    ip = c.inference_providers
    provider = call("inference_providers.create", ip.create, name="Detector", provider_type="http",
                    config={"url": "https://example.com/infer"})
    call("inference_providers.list", ip.list)
    call("inference_providers.get", ip.get, provider.uid)
    call("inference_providers.update", ip.update, provider.uid, description="YOLO")
    call("inference_providers.test", ip.test, provider.uid)
    call("inference_providers.delete", ip.delete, provider.uid)


# ---- fleet ----------------------------------------------------------------------------------------
@section
def section_7():
    global first, items, project, folder
    fl = c.fleet
    device = call("fleet.devices.register", fl.devices.register, name="Rover", type="robot")
    call("fleet.devices.list", fl.devices.list)
    call("fleet.devices.get", fl.devices.get, device.uid)
    call("fleet.devices.update", fl.devices.update, device.uid, firmware_version="2.0")
    recordings = call("fleet.recordings.list", fl.recordings.list)
    recording = recordings.items[0].uid
    call("fleet.recordings.get", fl.recordings.get, recording)
    call("fleet.recordings.update", fl.recordings.update, recording, tags=["night"])
    event = call("fleet.events.create", fl.events.create, recording=recording, device=device.uid, label="Stop",
                 type="marker", timestamp="2026-01-01T00:00:00Z")
    call("fleet.events.create_batch", fl.events.create_batch,
         events=[{"recording": recording, "device": device.uid, "label": "Go", "type": "marker",
                  "timestamp": "2026-01-01T00:00:01Z"}])
    call("fleet.events.list", fl.events.list, recording_id=recording)
    call("fleet.events.get", fl.events.get, event.uid)
    call("fleet.events.delete", fl.events.delete, event.uid)
    rule = call("fleet.rules.create", fl.rules.create, name="Battery low", condition={"type": "threshold"}, actions=[])
    call("fleet.rules.list", fl.rules.list)
    call("fleet.rules.get", fl.rules.get, rule.uid)
    call("fleet.rules.update", fl.rules.update, rule.uid, enabled=False)
    call("fleet.rules.delete", fl.rules.delete, rule.uid)
    alerts = call("fleet.alerts.list", fl.alerts.list)
    call("fleet.alerts.get", fl.alerts.get, alerts.items[0].uid)
    call("fleet.alerts.acknowledge", fl.alerts.acknowledge, alerts.items[0].uid)
    call("fleet.alerts.resolve", fl.alerts.resolve, alerts.items[0].uid, resolution_note="Charged")
    channel = call("fleet.alert_channels.create", fl.alert_channels.create, name="Ops", type="email", config={})
    call("fleet.alert_channels.list", fl.alert_channels.list)
    call("fleet.alert_channels.test", fl.alert_channels.test, channel.uid)
    call("fleet.alert_channels.delete", fl.alert_channels.delete, channel.uid)
    call("fleet.recordings.delete", fl.recordings.delete, recording)
    call("fleet.devices.delete", fl.devices.delete, device.uid)
    call("fleet.uploads.collect_files", fl.uploads.collect_files, folder)
    # Recording uploads, step by step on one recording...
    up = fl.uploads
    manifest = [{"path": f"file{n}.txt", "size_bytes": os.path.getsize(os.path.join(folder, f"file{n}.txt"))}
                for n in range(3)]
    session = call("fleet.uploads.init_upload", up.init_upload, "rec-steps", manifest)
    grants = call("fleet.uploads.get_upload_urls", up.get_upload_urls, "rec-steps", session.uid,
                  [m["path"] for m in manifest])
    accepted = []
    for grant, m in zip(grants.urls, manifest):
        with open(os.path.join(folder, grant.path), "rb") as f:
            response = httpx.put(grant.put_url, content=f.read(), headers=grant.headers, timeout=20)
        response.raise_for_status()
        accepted.append({"path": grant.path, "etag": response.headers["ETag"].strip('"'),
                         "size_bytes": m["size_bytes"]})
    call("fleet.uploads.confirm_upload", up.confirm_upload, "rec-steps", session.uid, accepted)
    call("fleet.uploads.get_upload_status", up.get_upload_status, "rec-steps")
    call("fleet.uploads.finalize_upload", up.finalize_upload, "rec-steps", session.uid)
    # ... and with the SDK's guarded helper on another.
    call("fleet.uploads.upload_recording", up.upload_recording, "rec-helper", folder, max_workers=2)
    results.setdefault("fleet.uploads.upload_managed_recording",
                       "not served: the managed MCAP upload protocol is not emulated")

everything = public_methods()
for name in everything:
    results.setdefault(name, "not called")
ok = sorted(n for n in everything if results[n] == "ok")
stopped = {k: v for k, v in results.items() if k.startswith("<")}
print(json.dumps({"total": len(everything), "ok": len(ok), "stopped": stopped,
                  "results": {n: results[n] for n in everything}}))
