"""Figure helpers in latentlab.plots."""

from latentlab.plots import wrap_name


def test_long_model_names_break_at_their_last_hyphen():
    assert wrap_name("two-decoder-vae") == "two-decoder-\nvae"
    assert wrap_name("resunet") == "resunet"
    assert wrap_name("unet") == "unet"
