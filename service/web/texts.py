"""Every word a reader sees on a page, in one place: change the wording here and nowhere else.

Templates reach these as `t` (e.g. `t.confirm.button`); the mails have their own wording in
email_templates/. `{author}` and `{program}` are filled in from the content file.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from service.readers.addresses import MAX_LENGTH, InvalidAddress, Problem


@dataclass(frozen=True)
class FormText:
    label: str = "Your email address"
    placeholder: str = "you@example.com"
    button: str = "Send me the free regimen"
    fine_print: str = ("We first email you to ask permission. Nothing else is sent until you "
                       "say yes.")
    # The honeypot's label: people never see it, and a screen reader skips hidden fields.
    honeypot: str = "Leave this field empty"
    sent_heading: str = "Check your inbox."
    sent_text: str = ("We have emailed you to ask for permission. Open that email and press "
                      "“Yes, send me the regimen”.")


@dataclass(frozen=True)
class SignupText:
    lead: str = ("Free, from {author}. Enter your email address and we will send you the link "
                 "to your regimen page: every exercise in order, with its video tutorial.")


@dataclass(frozen=True)
class ListingText:
    """The hosted page `/` when the site offers several regimens: one entry per regimen."""

    title: str = "Free regimens"
    heading: str = "Free self-care regimens from {author}"
    lead: str = "Choose one: each is sent to you by email, free, once you say yes."
    button: str = "Get this regimen"
    # A form naming a regimen the site does not offer (a snippet older than the author's last
    # change); the same words for the JSON API.
    unknown: str = "No regimen of that name is offered here (any more)."


@dataclass(frozen=True)
class CheckInboxText:
    title: str = "Check your inbox"
    heading: str = "Check your inbox"
    lead: str = "We have sent you an email asking for permission to mail you the regimen."
    steps: tuple[str, ...] = (
        "Open the email from {author}.",
        "Press “Yes, send me the regimen”.",
        "The link to your regimen page arrives right after.",
    )
    fine_print: str = ("Nothing there in a few minutes? Look in your spam or promotions folder. "
                       "If you ignore the email, we will not write to you again.")


@dataclass(frozen=True)
class ConfirmText:
    title: str = "Confirm your address"
    heading: str = "One click, and your regimen is on its way"
    button: str = "Yes, send me the regimen"
    # When the address also waits for other regimens: the button confirms them all.
    also: str = "This also confirms {titles}."


@dataclass(frozen=True)
class ConfirmedText:
    title: str = "Confirmed"
    heading: str = "Thank you, you're confirmed"
    lead: str = "Your regimen is ready, and we have also emailed you the link to keep."
    button: str = "Open my regimen"
    # When the button confirmed several regimens: one link each.
    lead_many: str = "Your regimens are ready, and we have also emailed you their links to keep."
    button_each: str = "{title}"


@dataclass(frozen=True)
class RegimenText:
    # The page's first step, before Unit 1, as the post asks.
    read_through: str = "Read the whole regimen through, once"
    read_through_note: str = ("Without trying to remember it. Then start with Unit 1, with its "
                              "first exercise, and go on in order.")
    # The progress box at the top, and each step's button.
    progress_heading: str = "Your progress"
    start_with: str = "Start with:"
    continue_with: str = "Continue with:"
    all_done: str = "You have marked every exercise done. Well done!"
    unit_count: str = "{done} of {total} done"
    next_steps: str = "You have done all of {unit}. What next?"
    kept: str = ("Your progress is kept with your personal link, not in this browser: open the "
                 "link on any device to see it.")
    mark_done: str = "Mark as done"
    marked_done: str = "Done ✓ (undo)"
    # Said to screen readers when the page's script has marked a step without a reload.
    status: str = "{title}: {state}. {next}"
    state_done: str = "marked done"
    state_not_done: str = "no longer marked done"
    start_here_free: str = "Start here — free"
    start_here: str = "Start here"
    watch: str = "Watch the free video"
    buy: str = "Get it in {program}"
    keep: str = "This page is yours: keep the email with its link, or bookmark this page."
    unsubscribe: str = "Stop emails"


@dataclass(frozen=True)
class UnsubscribeText:
    title: str = "Unsubscribe"
    heading: str = "Stop the emails about this regimen?"
    lead: str = "Your regimen page keeps working either way."
    button: str = "Unsubscribe"
    # Shown when the address gets other regimens too.
    everything_lead: str = "You also get emails about other regimens from {author}."
    everything_button: str = "Stop everything"


@dataclass(frozen=True)
class LessonsText:
    """The page behind a lesson's "stop the lessons" link (and its one-click unsubscribe)."""

    title: str = "Stop the lessons"
    heading: str = "Stop the lessons about this regimen?"
    lead: str = "Your regimen page keeps working, and nothing else changes."
    button: str = "Stop the lessons"
    done_title: str = "Lessons stopped"
    done_heading: str = "The lessons are stopped"
    done_lead: str = ("You will get no more lessons about this regimen. Your regimen page keeps "
                      "working: keep its link.")
    open_regimen: str = "Open my regimen"


@dataclass(frozen=True)
class UnsubscribedText:
    title: str = "Unsubscribed"
    heading: str = "You're unsubscribed"
    lead: str = "You will get no more email about this regimen. Your regimen link keeps working."
    lead_everything: str = ("You will get no more email from {author}. Your regimen links keep "
                            "working.")


@dataclass(frozen=True)
class EraseText:
    title: str = "Delete my data"
    heading: str = "Delete everything {author} holds about you?"
    lead: str = ("Your address, the record of your permission and your regimen link are deleted "
                 "for good. You can always sign up again later.")
    button: str = "Delete my data"
    done_title: str = "Your data is deleted"
    done_heading: str = "Your data is deleted"
    done_lead: str = ("Nothing about you is kept but a scrambled fingerprint of your address, so "
                      "that an old list can never bring it back. You will get no more email.")


@dataclass(frozen=True)
class ExpiredText:
    title: str = "This link has expired"
    heading: str = "This link has expired"
    lead: str = "Confirmation links work for {days}. We can send you a new one."
    button: str = "Send me a new link"


@dataclass(frozen=True)
class LinkText:
    """Pages for personal links that cannot be used."""

    invalid_heading: str = "This link is not valid"
    invalid_text: str = ("It may have been cut short when it was copied. Open it straight from "
                         "the email, or sign up again for a fresh one.")
    unknown_heading: str = "This link no longer works"
    unknown_text: str = ("The address it belonged to is no longer on file. You can sign up "
                         "again to get the regimen.")
    left_heading: str = "You unsubscribed after this email was sent"
    left_text: str = "To get the regimen after all, sign up again."
    gone_heading: str = "This regimen is no longer offered"
    gone_text: str = ("Its author has taken it down, so this link no longer leads anywhere. "
                      "The other regimens are still free to sign up for.")
    signup_again: str = "Get the free regimen"


@dataclass(frozen=True)
class AuthorText:
    title: str = "The form for your blog"
    heading: str = "Put the signup form into your blog post"
    source_label: str = "Address of your blog post"
    source_button: str = "Make the form for this post"
    snippet_label: str = "The form to paste"
    regimen_label: str = "The regimen the form signs readers up for"
    steps: tuple[str, ...] = (
        "Enter the address of the post the form goes into (and, when you offer several, "
        "choose its regimen), and press the button above.",
        "Copy everything in the box.",
        "In Blogger, edit the post and switch from “Compose view” to “HTML view”.",
        "Paste it at the end of the post, and publish.",
    )
    script_note: str = ("The last line (the script) is optional: with it the reader stays on "
                        "your post after pressing the button. Without it, the form still works.")
    origin_allowed: str = ("Readers come back to this post after they sign up: {origin} is in "
                           "REGIMEN_ALLOWED_ORIGINS.")
    origin_refused: str = ("{origin} is not in REGIMEN_ALLOWED_ORIGINS yet. Until it is, readers "
                           "see this service's “check your inbox” page instead of coming back to "
                           "your post, and the script cannot send the form.")
    origins_list: str = "REGIMEN_ALLOWED_ORIGINS: {origins}"
    origins_missing: str = "(not set)"


@dataclass(frozen=True)
class SiteText:
    footer: str = "A free regimen from {author}"
    back_to_blog: str = "Back to the blog"


@dataclass(frozen=True)
class AddressText:
    """Why a typed address is refused, shown next to the field."""

    empty: str = "Please enter your email address."
    control: str = "An email address cannot contain line breaks or control characters."
    too_long: str = "That is longer than any email address can be ({limit} characters)."
    invalid: str = "That doesn't look like an email address: {reason}"
    disposable: str = ("Please use an address you keep: mail to throw-away mailboxes gets lost, "
                       "and your regimen link with it.")
    no_mail: str = "That domain does not receive email. Please check the part after the @."
    not_sendable: str = ("Our mail server cannot send to an address with letters beyond A to Z "
                         "before the @. Please use another address.")
    captcha: str = "Please complete the check below the address, then press the button again."

    def explain(self, refused: InvalidAddress) -> str:
        if refused.problem is Problem.EMPTY:
            return self.empty
        if refused.problem is Problem.CONTROL:
            return self.control
        if refused.problem is Problem.TOO_LONG:
            return self.too_long.format(limit=MAX_LENGTH)
        return self.invalid.format(reason=refused.detail)


@dataclass(frozen=True)
class Texts:
    site: SiteText = field(default_factory=SiteText)
    form: FormText = field(default_factory=FormText)
    signup: SignupText = field(default_factory=SignupText)
    listing: ListingText = field(default_factory=ListingText)
    check_inbox: CheckInboxText = field(default_factory=CheckInboxText)
    confirm: ConfirmText = field(default_factory=ConfirmText)
    confirmed: ConfirmedText = field(default_factory=ConfirmedText)
    regimen: RegimenText = field(default_factory=RegimenText)
    unsubscribe: UnsubscribeText = field(default_factory=UnsubscribeText)
    unsubscribed: UnsubscribedText = field(default_factory=UnsubscribedText)
    lessons: LessonsText = field(default_factory=LessonsText)
    erase: EraseText = field(default_factory=EraseText)
    expired: ExpiredText = field(default_factory=ExpiredText)
    link: LinkText = field(default_factory=LinkText)
    author: AuthorText = field(default_factory=AuthorText)
    address: AddressText = field(default_factory=AddressText)


TEXTS = Texts()


@functools.cache
def consent_version(*promises: str) -> str:
    """A fingerprint of the words a reader agrees to (the form and the confirm page, with the
    lines promising lessons they showed: service.core.lessons.promise), stored with each
    consent: change the wording and new consents show it, automatically."""
    words = "\n".join([TEXTS.form.button, TEXTS.form.fine_print, TEXTS.confirm.heading,
                       TEXTS.confirm.button, TEXTS.confirm.also, *promises])
    return hashlib.sha256(words.encode()).hexdigest()[:12]


# The wording of a regimen without lessons.
CONSENT_VERSION = consent_version()


def titles(names: list[str]) -> str:
    """Regimen titles in a sentence: “A”, “A” and “B”, “A”, “B” and “C”."""
    quoted = [f"“{name}”" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]

# The answer to a JSON signup, whatever the address's state.
ACCEPTED_MESSAGE = "Check your inbox to confirm your address."

# (heading, text) of the page for each HTTP error status.
ERROR_TEXT: dict[int, tuple[str, str]] = {
    400: ("This request could not be understood", "Please go back and try again."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too much data", "The form sent more than this service accepts."),
    415: ("Unsupported form", "Send the form as a web form or as JSON."),
    429: ("Too many tries", "Please wait a few minutes, then try again. If you have already "
          "signed up, the email is on its way: look in your inbox."),
    500: ("Something went wrong on our side",
          "Please try again in a minute. If it keeps happening, let the blog's author know."),
    503: ("Not available just now",
          "The service cannot take this at the moment. Please try again in a minute."),
}
