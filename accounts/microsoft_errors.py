"""Entra's error responses, classified by what has to happen next.

Branches on the ``error`` field and the AADSTS numbers in ``error_codes`` (or at the start of
``error_description`` when a redirect carries only that), never on the prose. Every reason is a
sentence for people that says what to do; none contains a token.
"""

from __future__ import annotations

from typing import Any, Literal

# --- Entra error codes (the ``error_codes`` list), see MICROSOFT.md ---------------------------
REVOKED = 50173
EXPIRED_INACTIVE = (70008, 700082, 700084)
CONSENT = (65001, 65004, 90094, 90095)
MFA_REQUIRED = (50076, 50079, 50158)
CONDITIONAL_ACCESS = (53000, 53001, 53002, 53003, 530032)
ACCOUNT_PROBLEMS = {
    50020: "The account is not a member of this organization (tenant).",
    50034: "The account no longer exists in the organization.",
    50053: "The account is locked.",
    50055: "The account's password has expired.",
    50057: "The account is disabled.",
    50126: "The account's credentials are no longer valid.",
}
CLIENT_SECRET_WRONG = 7000215
CLIENT_SECRET_EXPIRED = 7000222
APP_NOT_FOUND = 700016

ErrorKind = Literal["reconnect", "app_registration", "transient", "flow"]


class MicrosoftError(Exception):
    """A failed exchange with Entra, classified by what has to happen next.

    ``kind``: ``reconnect`` (the grant is gone; a person must sign in again),
    ``app_registration`` (the app's secret or registration is wrong; an admin must fix the
    configuration), ``transient`` (network, 5xx, 429; retry after ``retry_after``), ``flow``
    (the sign-in itself failed: declined, expired, wrong account). ``reason`` is the readable
    sentence; ``code`` is the AADSTS number when Entra sent one.
    """

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        error: str = "",
        code: int | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.error = error
        self.code = code
        self.retry_after = retry_after
        self.detail = detail

    @property
    def code_label(self) -> str:
        return f"AADSTS{self.code}" if self.code else (self.error or "")


def _codes(result: dict[str, Any]) -> list[int]:
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    description = str(result.get("error_description") or "")
    if not codes and description.startswith("AADSTS"):
        digits = description[6:].split(":", 1)[0]
        if digits.isdigit():
            codes.append(int(digits))
    return codes


def classify_error(
    result: dict[str, Any], *, during_flow: bool = False, status: int | None = None
) -> MicrosoftError:
    """Turn an Entra error response into a :class:`MicrosoftError`, branching on ``error``
    and the AADSTS codes, never on the description text."""
    error = str(result.get("error") or "unknown_error")
    codes = _codes(result)
    code = codes[0] if codes else None
    detail = str(result.get("error_description") or "")
    found = set(codes)

    def make(kind: ErrorKind, reason: str) -> MicrosoftError:
        return MicrosoftError(kind, reason, error=error, code=code, detail=detail)

    if error in {"temporarily_unavailable", "server_error"} or (status or 0) == 429:
        return make("transient", "Microsoft's sign-in service is busy. Mailweb will try again.")
    if error == "invalid_client" or found & {CLIENT_SECRET_WRONG, CLIENT_SECRET_EXPIRED}:
        if CLIENT_SECRET_EXPIRED in found:
            reason = (
                "Microsoft says Mailweb's client secret has expired. Create a new secret in the "
                "Entra admin center (App registrations → Mailweb → Certificates & secrets), put "
                "it in MICROSOFT_CLIENT_SECRET and restart Mailweb."
            )
        else:
            reason = (
                "Microsoft rejected Mailweb's client secret. Check that MICROSOFT_CLIENT_SECRET "
                "holds the secret's value (not its ID) for the app in MICROSOFT_CLIENT_ID, then "
                "restart Mailweb."
            )
        return make("app_registration", reason)
    if error == "unauthorized_client" or APP_NOT_FOUND in found:
        return make(
            "app_registration",
            "Microsoft does not know Mailweb's application in this organization. Check "
            "MICROSOFT_CLIENT_ID and MICROSOFT_TENANT against the app registration, and that "
            "the app allows accounts from this organization.",
        )
    if error == "invalid_scope":
        return make(
            "app_registration",
            "Microsoft refused the permissions Mailweb asks for. Check the app registration's "
            "API permissions (see the README).",
        )
    if during_flow:
        return _flow_error(error, found, make)
    return _grant_error(error, found, make)


def _grant_error(error: str, found: set[int], make: Any) -> MicrosoftError:
    """A refresh failed for a reason only a person signing in again can fix."""
    if REVOKED in found:
        why = (
            "Microsoft revoked Mailweb's access to this mailbox (the password was changed, or "
            "an administrator revoked its sign-in sessions)."
        )
    elif found & set(EXPIRED_INACTIVE):
        why = (
            "Mailweb's access to this mailbox expired (Microsoft ends unused access after 90 days)."
        )
    elif error == "consent_required" or found & set(CONSENT):
        why = "Consent for Mailweb was withdrawn, or its permissions changed and need approval."
    elif found & set(MFA_REQUIRED):
        why = "Microsoft now requires a multi-factor sign-in for this account."
    elif found & set(CONDITIONAL_ACCESS):
        why = "A Conditional Access policy of the organization blocks Mailweb's access."
    elif found & ACCOUNT_PROBLEMS.keys():
        why = ACCOUNT_PROBLEMS[min(found & ACCOUNT_PROBLEMS.keys())]
    elif error == "interaction_required":
        why = "Microsoft needs the account to sign in again interactively."
    elif error == "invalid_grant":
        why = "Microsoft no longer accepts Mailweb's access to this mailbox."
    else:
        why = f"Microsoft refused to renew Mailweb's access ({error})."
    return make("reconnect", why + " Reconnect the mailbox on the Mailboxes page.")


def _flow_error(error: str, found: set[int], make: Any) -> MicrosoftError:
    """The interactive sign-in failed: say what happened and what to do next."""
    if error == "access_denied" and not found & {65001, 90094, 90095}:
        return make(
            "flow",
            "The sign-in was cancelled, or the permissions Mailweb asks for were declined. "
            "Try again and accept them, or ask an administrator to grant admin consent.",
        )
    if error == "consent_required" or found & {65001, 90094, 90095}:
        return make(
            "flow",
            "Your organization requires an administrator to approve Mailweb. A Global or "
            "Privileged Role Administrator opens the Entra admin center → App registrations → "
            "Mailweb → API permissions → Grant admin consent; then try again.",
        )
    if 50020 in found:
        return make(
            "flow",
            "That account belongs to a different organization than the one Mailweb is set up "
            "for. Sign in with an account of your organization, or check MICROSOFT_TENANT.",
        )
    if found & {54005, 70008, 9002313}:
        return make(
            "flow",
            "The sign-in took too long or was already used (for example after reloading the "
            "page). Start again.",
        )
    if found & set(MFA_REQUIRED) or found & set(CONDITIONAL_ACCESS):
        return make(
            "flow",
            "A sign-in policy of your organization (multi-factor or Conditional Access) did not "
            "allow this sign-in. Complete it as Microsoft asks, or ask your administrator.",
        )
    return make("flow", f"Microsoft did not complete the sign-in ({error}). Try again.")
