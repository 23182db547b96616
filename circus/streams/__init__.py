"""Process output: pipes read on the loop as whole lines, and where those lines go."""
