"""The operator's write pages, and the job status page they and the manager's re-plan lead to.

* ``/operator/members`` (list, add form) and ``/operator/members/{ref}`` (edit form): personal
  data only in ``member_personal`` (:func:`noaber.services.members.add_member`,
  :func:`~noaber.services.members.update_member`; audited with the names of the fields,
  never their values);
* ``/operator/users`` (list, add form) and ``/operator/users/{username}`` (role and password
  reset forms; audited ``user.add``, ``user.role``, ``user.password_reset``);
* ``/operator/runs``: the settlement runs, a form that queues a community's month as a job
  (a final run posting only the difference with the ledger, so running a month again after
  its data changed corrects it; or, ticked "preview", a provisional run), and post/void of a
  provisional run (audited ``settlement.post``/``settlement.void``);
  ``/operator/runs/{id}``: what a run moves per member, the preview to check before posting;
* ``/jobs/{job_id}``: a job's state (queued, running, done, failed), its steps with their
  times, its result or error; refreshes itself while the job is queued or running;
* ``POST /sites/{site_name}/replan``: the manager's "re-plan now" button (the job of
  ``POST /api/sites/{site_name}/replan``), answered with its status page.

Every form carries the CSRF field (:mod:`noaber.api.forms`); a refused value shows the form
again (422) with a Dutch message per field and what was typed; nothing is stored then.
Included by :mod:`noaber.api.routers.manage`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from energy.audit import Actor, record
from energy.errors import NoaberError, ValidationError
from energy.models import Community, Member, MemberKind, Role, Site, User
from energy.users import create_user, reset_password
from noaber.api.access import site_for
from noaber.api.deps import IdPath, SessionDep, SettingsDep, not_found, require_roles
from noaber.api.forms import FormUser
from noaber.api.language import ROLE_LABELS, PageLang
from noaber.api.routers.jobs import enqueue_replan, enqueue_settlement, job_for
from noaber.api.routers.pages import gettext, render
from noaber.api.routers.users import RoleIn, set_user_role
from noaber.api.throttle import app_throttle
from noaber.services.members import (
    add_member,
    personal_values_of,
    update_member,
)
from settlement.models import SettlementRun

router = APIRouter(tags=["operator pages"], include_in_schema=False)

Operator = Annotated[User, Depends(require_roles(Role.OPERATOR))]
Planner = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER))]

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

#: The Dutch message of a refused form value: (field, a part of the English message or "",
#: the msgid). The first match wins; the field's "" entry is its fallback.
FORM_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("name", "", "enter a name"),
    ("email", "", "enter an e-mail address like name@example.nl"),
    ("address", "", "the address is too long"),
    ("iban", "", "enter a valid IBAN, like NL91 ABNA 0417 1643 00"),
    ("licence_plate", "", "enter a licence plate of letters and digits, like AB-123-C"),
    ("label", "", "the label is too long"),
    ("kind", "", "choose person or organisation"),
    (
        "ref",
        "from the person's name",
        "the member number would contain a word of the name: choose another name",
    ),
    ("ref", "", "this member can no longer be changed"),
    ("username", "already exists", "this username is taken"),
    ("username", "own role", "you cannot change your own role; ask another operator"),
    (
        "username",
        "from the person's name",
        "the username must not contain a word of the member's name",
    ),
    ("username", "", "a username is 3-100 characters a-z, 0-9, '.', '_', '@', '-'"),
    ("password", "", "a password is 8 to 1024 characters"),
    ("new_password", "", "a password is 8 to 1024 characters"),
    ("role", "", "choose a role"),
    ("member_ref", "needs", "choose the member this user acts for"),
    ("member_ref", "does not act", "this role does not act for a member: leave the member empty"),
    ("member_ref", "", "choose a known member"),
    ("site_names", "needs", "choose at least one site"),
    ("site_names", "only a site_manager", "only a site manager is linked to sites"),
    ("site_names", "", "choose known sites"),
    ("period", "", "enter a month as YYYY-MM"),
    ("community", "", "choose a community"),
    ("run", "", "only a provisional (pending) run can be posted or voided"),
)

#: Labels of the member form's fields (translated on the page).
MEMBER_LABELS = {
    "name": "Name",
    "email": "E-mail",
    "address": "Address",
    "iban": "IBAN",
    "licence_plate": "Licence plate",
    "label": "Label (e.g. ev-anna)",
}


def error_text(locale: str, field: str, message: str) -> str:
    """The Dutch (``locale``) text of a refused ``field`` (:data:`FORM_ERRORS`)."""
    for f, part, msgid in FORM_ERRORS:
        if f == field and part in message:
            return gettext(locale, msgid)
    return gettext(locale, "this value is not accepted")


def _error(locale: str, exc: ValidationError) -> dict[str, str]:
    field = exc.location or ""
    return {"field": field, "message": error_text(locale, field, exc.message)}


def _must_be(user: User, *roles: Role) -> None:
    """403 for a form user whose role may not use the page."""
    if user.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role.value} may not")


def _page(template: str, locale: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """:func:`render` with ``role_label`` (a role, or its value, by its translated name)."""

    def role_label(r: Role | str) -> str:
        return gettext(locale, ROLE_LABELS.get(Role(r), str(r)))

    return render(template, locale, status_code, role_label=role_label, **context)


def _actor(user: User) -> Actor:
    return Actor(user.username, "api")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


# --- members -----------------------------------------------------------------------------


def _members(session: Session) -> list[Member]:
    q = select(Member).options(selectinload(Member.personal)).order_by(Member.ref)
    return list(session.scalars(q))


def _members_page(
    session: Session,
    user: User,
    locale: str,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return _page(
        "operator_members.html",
        locale,
        status_code,
        user=user,
        members=_members(session),
        labels=MEMBER_LABELS,
        kinds=[k.value for k in MemberKind],
        values=values or {"kind": MemberKind.PERSON.value},
        errors=errors or [],
    )


@router.get("/operator/members", response_class=HTMLResponse)
def members_page(user: Operator, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """The members with their personal data, and the form that adds one."""
    return _members_page(session, user, locale)


def _member_form(
    name: str, email: str, address: str, iban: str, licence_plate: str, label: str
) -> dict[str, str]:
    return {
        "name": name,
        "email": email,
        "address": address,
        "iban": iban,
        "licence_plate": licence_plate,
        "label": label,
    }


FormText = Annotated[str, Form(max_length=600)]


@router.post("/operator/members")
def members_add(
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    kind: Annotated[str, Form(max_length=20)] = "person",
    name: FormText = "",
    email: FormText = "",
    address: FormText = "",
    iban: FormText = "",
    licence_plate: FormText = "",
    label: FormText = "",
) -> Response:
    """Add the form's member (303 to its page) or show the form again with the reason."""
    _must_be(user, Role.OPERATOR)
    values = _member_form(name, email, address, iban, licence_plate, label)
    try:
        member = add_member(session, _actor(user), kind, dict(values))
    except ValidationError as exc:
        session.rollback()
        return _members_page(
            session,
            user,
            locale,
            values={**values, "kind": kind},
            errors=[_error(locale, exc)],
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    session.commit()
    return _see_other(f"/operator/members/{member.ref}?saved=1")


def _member(session: Session, ref: str) -> Member:
    member = session.scalar(
        select(Member).where(Member.ref == ref).options(selectinload(Member.personal))
    )
    if member is None:
        raise not_found(f"member {ref!r}")
    return member


def _member_page(
    session: Session,
    user: User,
    locale: str,
    member: Member,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    stored = {k: v or "" for k, v in personal_values_of(member.personal).items()}
    return _page(
        "operator_member.html",
        locale,
        status_code,
        user=user,
        member=member,
        labels=MEMBER_LABELS,
        values=values or stored,
        errors=errors or [],
        saved=saved,
    )


REF = r"^[a-z0-9][a-z0-9_-]{0,63}$"


@router.get("/operator/members/{ref}", response_class=HTMLResponse)
def member_page(
    ref: str,
    user: Operator,
    session: SessionDep,
    locale: PageLang,
    saved: Annotated[int, Query(ge=0, le=1)] = 0,
) -> HTMLResponse:
    """One member's personal data as a form."""
    if not re.match(REF, ref):
        raise not_found(f"member {ref!r}")
    return _member_page(session, user, locale, _member(session, ref), saved=bool(saved))


@router.post("/operator/members/{ref}")
def member_save(
    ref: str,
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    name: FormText = "",
    email: FormText = "",
    address: FormText = "",
    iban: FormText = "",
    licence_plate: FormText = "",
    label: FormText = "",
) -> Response:
    """Store the form's personal data (303 back) or show the form again with the reason."""
    _must_be(user, Role.OPERATOR)
    if not re.match(REF, ref):
        raise not_found(f"member {ref!r}")
    member = _member(session, ref)
    values = _member_form(name, email, address, iban, licence_plate, label)
    try:
        update_member(session, ref, _actor(user), dict(values))
    except ValidationError as exc:
        session.rollback()
        return _member_page(
            session,
            user,
            locale,
            _member(session, ref),
            values=values,
            errors=[_error(locale, exc)],
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    session.commit()
    return _see_other(f"/operator/members/{member.ref}?saved=1")


# --- users -------------------------------------------------------------------------------


def _user_choices(session: Session) -> dict[str, Any]:
    return {
        "roles": [r.value for r in Role],
        "member_refs": [
            (m.ref, m.personal.name if m.personal else "")
            for m in _members(session)
            if m.erased_at is None
        ],
        "sites": list(session.scalars(select(Site).order_by(Site.name))),
    }


def _users_page(
    session: Session,
    user: User,
    locale: str,
    *,
    values: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    users = session.scalars(select(User).options(selectinload(User.sites)).order_by(User.username))
    return _page(
        "operator_users.html",
        locale,
        status_code,
        user=user,
        users=list(users),
        values=values or {"role": Role.MEMBER.value, "site_names": []},
        errors=errors or [],
        **_user_choices(session),
    )


@router.get("/operator/users", response_class=HTMLResponse)
def users_page(user: Operator, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """The users with their roles, and the form that adds one."""
    return _users_page(session, user, locale)


Short = Annotated[str, Form(max_length=100)]
Secret = Annotated[str, Form(max_length=1024)]
SiteNames = Annotated[list[str], Form(max_length=100)]


@router.post("/operator/users")
def users_add(
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    username: Short = "",
    password: Secret = "",
    role: Short = "",
    member_ref: Short = "",
    site_names: SiteNames = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    """Add the form's user (303 to their page) or show the form again with the reason (the
    password is never shown again)."""
    _must_be(user, Role.OPERATOR)
    values = {
        "username": username,
        "role": role,
        "member_ref": member_ref,
        "site_names": site_names,
    }
    try:
        made = create_user(
            session, username.strip(), password, role, member_ref or None, site_names
        )
        detail = {"role": made.role.value, "member": member_ref or None, "sites": site_names}
        record(session, _actor(user), "user.add", made.username, detail)
    except ValidationError as exc:
        session.rollback()
        return _users_page(
            session,
            user,
            locale,
            values=values,
            errors=[_error(locale, exc)],
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    session.commit()
    return _see_other(f"/operator/users/{made.username}?saved=user")


def _user(session: Session, username: str) -> User:
    found = session.scalar(
        select(User).where(User.username == username).options(selectinload(User.sites))
    )
    if found is None:
        raise not_found(f"user {username!r}")
    return found


def _user_page(
    session: Session,
    user: User,
    locale: str,
    target: User,
    *,
    values: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    saved: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    return _page(
        "operator_user.html",
        locale,
        status_code,
        user=user,
        target=target,
        values=values
        or {
            "role": target.role.value,
            "member_ref": target.member.ref if target.member else "",
            "site_names": sorted(s.name for s in target.sites),
        },
        errors=errors or [],
        saved=saved,
        **_user_choices(session),
    )


@router.get("/operator/users/{username}", response_class=HTMLResponse)
def user_page(
    username: str,
    user: Operator,
    session: SessionDep,
    locale: PageLang,
    saved: Annotated[str, Query(pattern="^(user|role|password)?$")] = "",
) -> HTMLResponse:
    """One user: their role as a form, and the password reset."""
    return _user_page(session, user, locale, _user(session, username), saved=saved)


@router.post("/operator/users/{username}/role")
def user_role_save(
    username: str,
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    role: Short = "",
    member_ref: Short = "",
    site_names: SiteNames = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    """Give the user the form's role (their tokens are revoked; 303 back) or show the form
    again with the reason."""
    _must_be(user, Role.OPERATOR)
    target = _user(session, username)
    body = RoleIn(role=role, member_ref=member_ref or None, site_names=site_names)
    try:
        set_user_role(session, user, username, body)
    except ValidationError as exc:
        session.rollback()
        values = {"role": role, "member_ref": member_ref, "site_names": site_names}
        return _user_page(
            session,
            user,
            locale,
            _user(session, username),
            values=values,
            errors=[_error(locale, exc)],
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    session.commit()
    return _see_other(f"/operator/users/{target.username}?saved=role")


@router.post("/operator/users/{username}/password")
def user_password_reset(
    request: Request,
    username: str,
    user: FormUser,
    session: SessionDep,
    locale: PageLang,
    new_password: Secret = "",
) -> Response:
    """Set the user's password (their tokens are revoked, their failed logins cleared)."""
    _must_be(user, Role.OPERATOR)
    target = _user(session, username)
    try:
        reset_password(session, target, new_password)
    except ValidationError as exc:
        session.rollback()
        err = {"field": "new_password", "message": error_text(locale, "new_password", exc.message)}
        return _user_page(
            session,
            user,
            locale,
            _user(session, username),
            errors=[err],
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    record(session, _actor(user), "user.password_reset", username)
    session.commit()
    app_throttle(request).forget_user(username)
    return _see_other(f"/operator/users/{target.username}?saved=password")


# --- settlement runs ---------------------------------------------------------------------


def _runs_page(
    session: Session,
    user: User,
    locale: str,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    from energy.jobs import Job

    runs = session.scalars(select(SettlementRun).order_by(SettlementRun.id.desc()).limit(100))
    jobs = session.scalars(
        select(Job).where(Job.kind == "settle").order_by(Job.id.desc()).limit(20)
    )
    return _page(
        "operator_runs.html",
        locale,
        status_code,
        user=user,
        runs=list(runs),
        jobs=list(jobs),
        communities=list(session.scalars(select(Community).order_by(Community.name))),
        values=values or {},
        errors=errors or [],
        done=done,
    )


@router.get("/operator/runs", response_class=HTMLResponse)
def runs_page(
    user: Operator,
    session: SessionDep,
    locale: PageLang,
    done: Annotated[str, Query(pattern=r"^((posted|voided)-\d{1,10})?$")] = "",
) -> HTMLResponse:
    """The settlement runs, the recent settlement jobs and the form that queues one."""
    return _runs_page(session, user, locale, done=done)


@router.post("/operator/runs")
def runs_queue(
    request: Request,
    user: FormUser,
    session: SessionDep,
    settings: SettingsDep,
    locale: PageLang,
    community: Short = "",
    period: Annotated[str, Form(max_length=20)] = "",
    preview: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Queue the settlement of a community's month (303 to the job's status page) or show
    the form again with the reason; with ``preview`` ticked, a provisional run that counts
    only once posted from its page (``/operator/runs/{id}``)."""
    _must_be(user, Role.OPERATOR)
    errors = []
    period = period.strip()
    if not PERIOD.match(period):
        errors.append({"field": "period", "message": error_text(locale, "period", "")})
    known = session.scalar(select(Community.id).where(Community.name == community))
    if known is None:
        errors.append({"field": "community", "message": error_text(locale, "community", "")})
    if errors:
        return _runs_page(
            session,
            user,
            locale,
            values={"community": community, "period": period, "preview": preview},
            errors=errors,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    job = enqueue_settlement(
        request, session, settings, user, community, period, provisional=bool(preview)
    )
    return _see_other(f"/jobs/{job.id}")


@router.get("/operator/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: IdPath, user: Operator, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """One run and what it moves per member (kWh shared and supplied, each cents line, the
    net each pays or is paid): for a provisional run the preview to check before posting it."""
    from energy.errors import NotFoundError
    from settlement.settle import run_preview

    try:
        preview = run_preview(session, run_id)
    except NotFoundError:
        raise not_found(f"settlement run {run_id}") from None
    return _page("operator_run.html", locale, user=user, preview=preview, run=preview.run)


def _resolve(
    request: Request, user: User, session: Session, locale: str, run_id: int, action: str
) -> Response:
    from settlement.audit import after_posting
    from settlement.settle import post_pending, void_pending

    _must_be(user, Role.OPERATOR)
    sessions = request.app.state.sessions
    with sessions() as s:
        run = s.get(SettlementRun, run_id)
        if run is None:
            raise not_found(f"settlement run {run_id}")
    resolve = post_pending if action == "post" else void_pending
    try:
        result = resolve(sessions, run_id)
    except NoaberError as exc:
        return _runs_page(
            session,
            user,
            locale,
            errors=[{"field": "run", "message": error_text(locale, "run", str(exc))}],
            status_code=status.HTTP_409_CONFLICT,
        )
    with sessions() as s, s.begin():
        record(
            s,
            _actor(user),
            f"settlement.{action}",
            str(run_id),
            {"transfers": result.n_transfers},
        )
    with sessions() as s:
        after_posting(s, request.app.state.settings.data_dir)
    return _see_other(f"/operator/runs?done={action}ed-{run_id}")


@router.post("/operator/runs/{run_id}/post")
def run_post(
    request: Request, run_id: IdPath, user: FormUser, session: SessionDep, locale: PageLang
) -> Response:
    """Post a provisional run: its pending transfers count, its statements are issued."""
    return _resolve(request, user, session, locale, run_id, "post")


@router.post("/operator/runs/{run_id}/void")
def run_void(
    request: Request, run_id: IdPath, user: FormUser, session: SessionDep, locale: PageLang
) -> Response:
    """Void a provisional run: its pending transfers will never count."""
    return _resolve(request, user, session, locale, run_id, "void")


# --- jobs and the re-plan button ---------------------------------------------------------

#: The steps a job goes through, in order, with the column that dates each.
JOB_STEPS = (("queued", "created_at"), ("running", "started_at"), ("done", "finished_at"))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: IdPath, user: Planner, session: SessionDep, locale: PageLang) -> HTMLResponse:
    """A job's state with its steps and times, its result or error; refreshes itself every
    2 s while queued or running."""
    job = job_for(session, user, job_id)
    site = session.get(Site, job.site_id) if job.site_id is not None else None
    reached = {"queued": 1, "running": 2, "done": 3, "failed": 3}.get(job.state, 1)
    return _page(
        "job.html",
        locale,
        user=user,
        job=job,
        site=site,
        steps=JOB_STEPS,
        reached=reached,
        active=job.state in ("queued", "running"),
    )


@router.post("/sites/{site_name}/replan")
def replan_button(
    request: Request,
    site_name: str,
    user: FormUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Re-plan the site now (the job of ``POST /api/sites/{site_name}/replan``); 303 to the
    job's status page."""
    _must_be(user, Role.OPERATOR, Role.SITE_MANAGER)
    site = site_for(session, user, site_name)
    job = enqueue_replan(request, settings, user, site)
    return _see_other(f"/jobs/{job.id}")
