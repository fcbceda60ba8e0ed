"""The reader's side: signup, confirmation, unsubscribe, erasure, their tokens and links,
import and export."""
