"""The txt2img / img2img accordion and the Animate Anyone tab."""
