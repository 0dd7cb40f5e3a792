"""mplhep figures of the evaluation stage."""
